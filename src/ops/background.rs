//! Backgrounds built from the image itself (ImageNet-9's "Only-BG-T") and foregrounds pasted
//! onto other backgrounds ("Mixed-*"). Pure functions on `size*size*3` crops.

use super::geometry::Rect;
use super::mask::Foreground;

/// The largest axis-aligned rectangle of the frame that meets no foreground pixel; ties go
/// to the smallest `(y0, x0, y1, x1)`. `None` when the foreground covers the frame.
///
/// Row by row, each column's run of free pixels ending at this row is a histogram bar;
/// every maximal free rectangle is some bar's height spread over the columns whose bars
/// are at least as tall, so checking that rectangle for every (row, column) finds them
/// all in O(size²).
pub fn largest_free_rect(fg: &Foreground) -> Option<Rect> {
    let size = fg.size();
    let covered = fg.flags();
    let mut height = vec![0usize; size];
    let (mut left, mut right) = (vec![0usize; size], vec![0usize; size]);
    let mut stack: Vec<usize> = Vec::with_capacity(size);
    let mut best: Option<(usize, Rect)> = None;
    for y in 0..size {
        for x in 0..size {
            height[x] = if covered[y * size + x] {
                0
            } else {
                height[x] + 1
            };
        }
        // left[x]: first column of the span where bars are >= height[x]; right[x]: one past.
        stack.clear();
        for x in 0..size {
            while stack.last().is_some_and(|&t| height[t] >= height[x]) {
                stack.pop();
            }
            left[x] = stack.last().map_or(0, |&t| t + 1);
            stack.push(x);
        }
        stack.clear();
        for x in (0..size).rev() {
            while stack.last().is_some_and(|&t| height[t] >= height[x]) {
                stack.pop();
            }
            right[x] = stack.last().copied().unwrap_or(size);
            stack.push(x);
        }
        for x in 0..size {
            let h = height[x];
            if h == 0 {
                continue;
            }
            let r = Rect {
                x0: left[x],
                y0: y + 1 - h,
                x1: right[x],
                y1: y + 1,
            };
            let area = h * (r.x1 - r.x0);
            let better = match &best {
                None => true,
                Some((a, b)) => {
                    area > *a || (area == *a && (r.y0, r.x0, r.y1, r.x1) < (b.y0, b.x0, b.y1, b.x1))
                }
            };
            if better {
                best = Some((area, r));
            }
        }
    }
    best.map(|(_, r)| r)
}

/// `bg_tiled`: the crop with every foreground pixel replaced by tiling the largest
/// foreground-free rectangle, tiles anchored at that rectangle's corner (so it maps onto
/// itself). Black where the foreground covers the whole frame (nothing to tile from).
pub fn tile_background(src: &[u8], fg: &Foreground, out: &mut [u8]) {
    let size = fg.size();
    out.copy_from_slice(src);
    let Some(free) = largest_free_rect(fg) else {
        out.fill(0);
        return;
    };
    let (fw, fh) = (free.x1 - free.x0, free.y1 - free.y0);
    for s in fg.spans() {
        let y = s.y;
        let sy = free.y0 + (y + fh - free.y0 % fh) % fh;
        for x in s.x0..s.x1 {
            let sx = free.x0 + (x + fw - free.x0 % fw) % fw;
            let (d, s) = ((y * size + x) * 3, (sy * size + sx) * 3);
            out[d..d + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
}

/// This image's foreground pasted, where it is, onto `background` (another image's
/// `bg_tiled` crop or a texture at the same size).
pub fn paste_foreground(src: &[u8], fg: &Foreground, background: &[u8], out: &mut [u8]) {
    out.copy_from_slice(background);
    for r in fg.byte_ranges() {
        out[r.clone()].copy_from_slice(&src[r]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rect(x0: usize, y0: usize, x1: usize, y1: usize) -> Rect {
        Rect { x0, y0, x1, y1 }
    }

    /// Brute force over every rectangle, the definition itself.
    fn brute(size: usize, rects: &[Rect]) -> Option<Rect> {
        let free = |x: usize, y: usize| {
            !rects
                .iter()
                .any(|r| (r.x0..r.x1).contains(&x) && (r.y0..r.y1).contains(&y))
        };
        let mut best: Option<(usize, (usize, usize, usize, usize))> = None;
        for y0 in 0..size {
            for x0 in 0..size {
                for y1 in y0 + 1..=size {
                    for x1 in x0 + 1..=size {
                        if !(y0..y1).all(|y| (x0..x1).all(|x| free(x, y))) {
                            continue;
                        }
                        let area = (x1 - x0) * (y1 - y0);
                        let key = (y0, x0, y1, x1);
                        if best.is_none_or(|(a, k)| area > a || (area == a && key < k)) {
                            best = Some((area, key));
                        }
                    }
                }
            }
        }
        best.map(|(_, (y0, x0, y1, x1))| rect(x0, y0, x1, y1))
    }

    proptest! {
        #[test]
        fn largest_free_rect_is_the_brute_force_one(
            size in 1usize..9,
            raw in proptest::collection::vec((0usize..9, 0usize..9, 0usize..9, 0usize..9), 0..4),
        ) {
            let rects: Vec<Rect> = raw
                .into_iter()
                .map(|(a, b, c, d)| {
                    let (x0, y0) = (a % size, b % size);
                    rect(x0, y0, x0 + 1 + c % (size - x0), y0 + 1 + d % (size - y0))
                })
                .collect();
            prop_assert_eq!(largest_free_rect(&Foreground::from_rects(size, &rects)), brute(size, &rects));
        }
    }

    #[test]
    fn tiling_repeats_the_free_rectangle_and_keeps_the_rest() {
        let size = 6;
        let src: Vec<u8> = (0..size * size * 3).map(|i| i as u8).collect();
        // Box over columns 2.. -> free rectangle is columns 0..2, all rows.
        let rects = [rect(2, 0, 6, 6)];
        let mut out = vec![0; src.len()];
        tile_background(&src, &Foreground::from_rects(size, &rects), &mut out);
        for y in 0..size {
            for x in 0..size {
                let s = (y * size + x % 2) * 3;
                assert_eq!(out[(y * size + x) * 3..][..3], src[s..s + 3], "({x}, {y})");
            }
        }
        tile_background(
            &src,
            &Foreground::from_rects(size, &[rect(0, 0, 6, 6)]),
            &mut out,
        );
        assert!(out.iter().all(|&v| v == 0), "nothing free: black");
    }

    #[test]
    fn paste_keeps_boxes_from_src_and_the_rest_from_the_background() {
        let size = 4;
        let src = vec![1u8; size * size * 3];
        let bg = vec![9u8; size * size * 3];
        let mut out = vec![0; src.len()];
        paste_foreground(
            &src,
            &Foreground::from_rects(size, &[rect(1, 1, 3, 2)]),
            &bg,
            &mut out,
        );
        for y in 0..size {
            for x in 0..size {
                let want = if y == 1 && (1..3).contains(&x) { 1 } else { 9 };
                assert_eq!(out[(y * size + x) * 3], want);
            }
        }
    }
}

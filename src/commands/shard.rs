//! `bgstream shard`: annotations and images -> tar shards, with what was left out listed.

use bgstream::shard;

use crate::cli::ShardArgs;

pub fn run(a: &ShardArgs) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    let mut found = shard::collect(&shard::ShardInputs {
        format: a.format,
        annotations: a.annotations.clone(),
        released_variant: a.released_variant.clone(),
        images: a.images.clone(),
        synsets: a.synsets.clone(),
        split: a.split.clone(),
        skip_difficult: a.voc_skip_difficult,
    })?;
    println!("detected {}", found.detected);
    if let Some(n) = a.limit {
        found.entries.truncate(n);
    }
    if found.entries.is_empty() {
        anyhow::bail!(
            "no annotated image of {} was found in {} ({} annotated images, {} images)",
            a.annotations
                .as_deref()
                .unwrap_or(found.images.as_path())
                .display(),
            found.images.display(),
            found.missing.len(),
            found.unannotated.len(),
        );
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)));
    let read_secs = started.elapsed().as_secs_f64();
    let planned = bgstream::shard::out_dir::planned(&a.prefix, found.entries.len(), a.shard_size);
    bgstream::shard::out_dir::claim(&a.out, &planned, a.overwrite)?;
    let writing = std::time::Instant::now();
    let written = shard::write_shards(&found.entries, &a.out, &a.prefix, a.shard_size, threads)?;
    let write_secs = writing.elapsed().as_secs_f64();
    println!(
        "wrote {} samples into {} shard(s) under {} ({:.1} MB) in {write_secs:.2} s ({:.0} \
         images/s, {threads} reader threads); annotations and image index read in {read_secs:.2} s",
        written.samples,
        written.shards.len(),
        a.out.display(),
        written.bytes as f64 / 1e6,
        written.samples as f64 / write_secs.max(1e-9),
    );
    if written.masks > 0 {
        println!(
            "  {} sample(s) with a foreground mask (<key>.mask.png)",
            written.masks
        );
    }
    print_shard_notes(&found, &written);
    let summary = a.out.join(format!("{}.summary.json", a.prefix));
    let json = serde_json::json!({
        "detected": found.detected,
        "annotations": a.annotations,
        "images": found.images,
        "samples": written.samples,
        "shards": written.shards,
        "seconds_reading_annotations": read_secs,
        "seconds_writing": write_secs,
        "annotations_without_image": found.missing,
        "images_without_annotation": found.unannotated,
        "without_objects": found.without_objects,
        "several_classes": found.several_classes,
        "folder_mismatch": found.folder_mismatch,
        "size_mismatch": written.size_mismatch,
        "unreadable_header": written.unreadable,
        "masks": written.masks,
        "bad_masks": written.bad_masks,
    });
    bgstream::atomic::write_file(&summary, &serde_json::to_vec_pretty(&json)?)?;
    println!("  every list in full: {}", summary.display());
    Ok(0)
}

/// What `shard` left out or noted, five keys a kind (the summary JSON lists them all).
fn print_shard_notes(found: &shard::Collected, written: &shard::ShardReport) {
    let notes: [(&str, &[String]); 8] = [
        ("annotations without an image", &found.missing),
        ("images without objects skipped", &found.without_objects),
        ("images without an annotation (not sharded)", &found.unannotated),
        (
            "images whose objects name several classes (labelled by the largest total box area)",
            &found.several_classes,
        ),
        (
            "images filed under another class folder than their annotation's (labelled by the annotation)",
            &found.folder_mismatch,
        ),
        (
            "images whose header disagrees with the annotated size (the run records size_mismatch)",
            &written.size_mismatch,
        ),
        (
            "images with an unreadable header (written; the run records the error)",
            &written.unreadable,
        ),
        (
            "masks unreadable or of another size than the image (written; the run records bad_mask)",
            &written.bad_masks,
        ),
    ];
    for (what, keys) in notes.iter().filter(|(_, k)| !k.is_empty()) {
        let shown = keys.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more = if keys.len() > 5 { ", ..." } else { "" };
        println!("  {} {what}: {shown}{more}", keys.len());
    }
}

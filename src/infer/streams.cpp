// CUDA streams and events for the batcher, which tch does not expose. Written against c10's
// device-generic interfaces only (DeviceGuardImplInterface, c10::Event), so it compiles with
// libtorch's headers and no CUDA toolkit, and reaches CUDA through the backend that
// libtorch_cuda registers when it loads. Every entry point catches everything: a C++
// exception must not unwind into Rust. Errors: -1, with the message in bgs_last_error().
#include <c10/core/Device.h>
#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <cstdint>
#include <exception>
#include <string>

namespace {
thread_local std::string last_error;

template <typename F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}

const c10::impl::DeviceGuardImplInterface* cuda() {
  return c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
}

c10::Device device(int index) {
  return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index));
}

c10::Stream stream(int index, int64_t id) {
  return c10::Stream::unpack3(id, static_cast<c10::DeviceIndex>(index), c10::DeviceType::CUDA);
}
}  // namespace

extern "C" {

const char* bgs_last_error() { return last_error.c_str(); }

// CUDA devices libtorch sees (0 without a CUDA backend or a GPU).
int bgs_cuda_device_count(int* out) {
  return guarded([&] {
    *out = c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA) ? cuda()->deviceCount() : 0;
  });
}

// A stream from libtorch's pool for `index` (not the default stream).
int bgs_cuda_stream_from_pool(int index, int64_t* id) {
  return guarded([&] { *id = cuda()->getStreamFromGlobalPool(device(index), false).id(); });
}

int bgs_cuda_current_stream(int index, int64_t* id) {
  return guarded([&] { *id = cuda()->getStream(device(index)).id(); });
}

// Makes `id` the current stream of its device; `previous` gets the one it replaced.
int bgs_cuda_set_stream(int index, int64_t id, int64_t* previous) {
  return guarded([&] { *previous = cuda()->exchangeStream(stream(index, id)).id(); });
}

int bgs_event_new(void** out) {
  return guarded([&] { *out = new c10::Event(c10::DeviceType::CUDA); });
}

void bgs_event_free(void* ev) { delete static_cast<c10::Event*>(ev); }

// Marks the point, in `id`'s queue, that the event completes at.
int bgs_event_record(void* ev, int index, int64_t id) {
  return guarded([&] { static_cast<c10::Event*>(ev)->record(stream(index, id)); });
}

// Work queued on `id` after this waits for the event (the host does not).
int bgs_event_block(void* ev, int index, int64_t id) {
  return guarded([&] { static_cast<c10::Event*>(ev)->block(stream(index, id)); });
}

// The host waits for the event.
int bgs_event_synchronize(void* ev) {
  return guarded([&] { static_cast<c10::Event*>(ev)->synchronize(); });
}
}

//! The global allocator of Baton's binaries (`batond`, `baton-mcp`): [`use_jemalloc!`].

/// Makes jemalloc the binary's global allocator, with a background thread that returns freed
/// pages to the OS about a second after they fall idle (`_RJEM_MALLOC_CONF` in the environment
/// overrides these options when the process starts).
///
/// Why: with glibc's malloc, the memory of 10,000 follow streams stayed with batond after they
/// closed (116–142 MiB above idle), while jemalloc's background thread hands it back within
/// seconds (5–6 MiB above idle; `ghz/streams-memory`, ghz/results/streams-memory.md). Without
/// the background thread jemalloc purges only while some thread allocates, so a process gone
/// quiet after a burst keeps its memory; its default decay is 10 s. The MCP gateway allocates
/// and frees a JSON document and a dynamic message per call, where glibc's arenas spent ~9 %
/// of its CPU in `malloc` and `malloc_consolidate`.
///
/// Invoke it once, at the top level of a binary's root module. jemalloc does not build for
/// MSVC targets, where the system allocator stays.
#[macro_export]
macro_rules! use_jemalloc {
    () => {
        #[cfg(not(target_env = "msvc"))]
        #[global_allocator]
        static ALLOCATOR: $crate::allocator::Jemalloc = $crate::allocator::Jemalloc;

        #[cfg(not(target_env = "msvc"))]
        #[unsafe(export_name = "_rjem_malloc_conf")]
        static MALLOC_CONF: $crate::allocator::MallocConf = $crate::allocator::MALLOC_CONF;
    };
}

#[cfg(not(target_env = "msvc"))]
pub use tikv_jemallocator::Jemalloc;

/// A C string jemalloc reads as its `malloc_conf` (a `const char *`).
#[cfg(not(target_env = "msvc"))]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);
// SAFETY: it points to a string literal, never written.
#[cfg(not(target_env = "msvc"))]
unsafe impl Sync for MallocConf {}

/// The options [`use_jemalloc!`] sets.
#[cfg(not(target_env = "msvc"))]
pub const MALLOC_CONF: MallocConf = MallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

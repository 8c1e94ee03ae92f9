//! Who serves an embedded data directory. One process at a time opens the database: it holds an
//! exclusive lock on `baton.lock` (`flock` on Unix, `LockFileEx` on Windows, through `fs4`;
//! the operating system drops it when the process dies, so a crash leaves no stale lock) and
//! publishes its loopback gRPC address in `baton.owner`. Every other `baton-mcp --embedded`
//! on the directory reads that address and calls the owner over gRPC instead of opening the
//! database: the directory is shared, never opened twice.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The lock every process on the directory tries to take.
pub const LOCK_FILE: &str = "baton.lock";
/// The owner's process id and gRPC address, written while it holds the lock.
pub const OWNER_FILE: &str = "baton.owner";

/// The exclusive right to open the directory's database; released on drop.
#[derive(Debug)]
pub struct DirLock {
    // Held for its lock: closing the file releases it.
    _file: File,
    dir: PathBuf,
}

/// The process serving a directory, as its owner file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub grpc: SocketAddr,
}

impl DirLock {
    /// Takes the directory's lock; `None` when another process holds it.
    pub fn try_acquire(dir: &Path) -> io::Result<Option<DirLock>> {
        let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(dir.join(LOCK_FILE))?;
        // Through fs4's trait: std's inherent `File::try_lock` needs a newer Rust than ours.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => return Ok(None),
            Err(fs4::TryLockError::Error(e)) => return Err(e),
        }
        let lock = DirLock { _file: file, dir: dir.to_owned() };
        // A previous owner that crashed left its address behind: nobody may call it.
        lock.withdraw();
        Ok(Some(lock))
    }

    /// Tells the other processes where to call: written to a temporary file and renamed, so a
    /// reader sees the old content or the new, never half of it.
    pub fn publish(&self, grpc: SocketAddr) -> io::Result<()> {
        let tmp = self.dir.join(format!("{OWNER_FILE}.{}", std::process::id()));
        let mut file = File::create(&tmp)?;
        writeln!(file, "pid {}\ngrpc {grpc}", std::process::id())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, self.dir.join(OWNER_FILE))
    }

    fn withdraw(&self) {
        match fs::remove_file(self.dir.join(OWNER_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "cannot remove the owner file"),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// The directory's owner, when one has published its address (a missing or unreadable file is
/// `None`: the owner is starting, or gone).
pub fn read_owner(dir: &Path) -> Option<Owner> {
    let text = fs::read_to_string(dir.join(OWNER_FILE)).ok()?;
    parse_owner(&text)
}

fn parse_owner(text: &str) -> Option<Owner> {
    let (mut pid, mut grpc) = (None, None);
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("pid", v)) => pid = v.trim().parse().ok(),
            Some(("grpc", v)) => grpc = v.trim().parse::<SocketAddr>().ok(),
            _ => {}
        }
    }
    // Only ever a loopback address: the embedded service is not served to the network.
    Some(Owner { pid: pid?, grpc: grpc.filter(|a| a.ip().is_loopback())? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_at_a_time_and_the_lock_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::try_acquire(dir.path()).unwrap().expect("the first takes the lock");
        // A second open file description is refused, as another process would be.
        assert!(DirLock::try_acquire(dir.path()).unwrap().is_none());
        assert_eq!(read_owner(dir.path()), None);
        lock.publish("127.0.0.1:4567".parse().unwrap()).unwrap();
        let owner = read_owner(dir.path()).expect("published");
        assert_eq!((owner.pid, owner.grpc), (std::process::id(), "127.0.0.1:4567".parse().unwrap()));
        drop(lock);
        assert_eq!(read_owner(dir.path()), None, "the owner file goes with the lock");
        let again = DirLock::try_acquire(dir.path()).unwrap();
        assert!(again.is_some(), "a released lock can be taken");
    }

    #[test]
    fn a_stale_owner_file_is_withdrawn_by_the_next_owner() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(OWNER_FILE), "pid 1\ngrpc 127.0.0.1:1\n").unwrap();
        let _lock = DirLock::try_acquire(dir.path()).unwrap().unwrap();
        assert_eq!(read_owner(dir.path()), None);
    }

    #[test]
    fn only_loopback_owners_are_believed() {
        assert_eq!(parse_owner("pid 7\ngrpc [::1]:9\n").map(|o| o.pid), Some(7));
        assert_eq!(parse_owner("pid 7\ngrpc 10.0.0.1:9\n"), None);
        assert_eq!(parse_owner("pid 7\n"), None);
        assert_eq!(parse_owner("garbage"), None);
    }
}

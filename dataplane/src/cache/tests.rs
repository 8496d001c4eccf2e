use std::sync::atomic::{AtomicUsize, Ordering};

use gateway_proto::v1::{Config, Upstream};

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gateway-dataplane-cache-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn snapshot(version: u64, upstream: &str) -> Snapshot {
    let config = Config {
        upstreams: vec![Upstream {
            name: upstream.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    Snapshot {
        version,
        hash: config_hash(&config),
        nonce: format!("n{version}"),
        config: Some(config),
        ..Default::default()
    }
}

#[test]
fn round_trip_keeps_the_previous_generation() {
    let dir = TempDir::new();
    let cache = SnapshotCache::new(&dir.0);
    assert!(cache.load_all().is_empty());

    cache.store(&snapshot(1, "a")).unwrap();
    cache.store(&snapshot(2, "b")).unwrap();
    assert_eq!(
        cache.load(Generation::Current).unwrap(),
        Some(snapshot(2, "b"))
    );
    assert_eq!(
        cache.load(Generation::Previous).unwrap(),
        Some(snapshot(1, "a"))
    );
    assert!(!dir.0.join(".snapshot.pb.tmp").exists());
}

#[test]
fn storing_the_same_config_again_keeps_the_real_previous_one() {
    let dir = TempDir::new();
    let cache = SnapshotCache::new(&dir.0);
    cache.store(&snapshot(1, "a")).unwrap();
    cache.store(&snapshot(2, "b")).unwrap();
    cache.store(&snapshot(2, "b")).unwrap();
    let mut renumbered = snapshot(3, "b");
    renumbered.nonce = "n2".into();
    cache.store(&renumbered).unwrap();
    assert_eq!(cache.load(Generation::Current).unwrap().unwrap().version, 3);
    assert_eq!(
        cache.load(Generation::Previous).unwrap(),
        Some(snapshot(1, "a"))
    );
}

#[test]
fn corrupt_current_file_falls_back_to_the_previous_generation() {
    let dir = TempDir::new();
    let cache = SnapshotCache::new(&dir.0);
    cache.store(&snapshot(1, "a")).unwrap();
    cache.store(&snapshot(2, "b")).unwrap();

    let current = cache.path(Generation::Current);
    let mut bytes = fs::read(&current).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&current, &bytes).unwrap();

    assert!(matches!(
        cache.load(Generation::Current),
        Err(CacheError::Corrupt { .. })
    ));
    let sound = cache.load_all();
    assert_eq!(sound, [(Generation::Previous, snapshot(1, "a"))]);

    // The next write replaces the corrupt file without pushing it over the good one.
    cache.store(&snapshot(3, "c")).unwrap();
    assert_eq!(
        cache.load(Generation::Current).unwrap(),
        Some(snapshot(3, "c"))
    );
    assert_eq!(
        cache.load(Generation::Previous).unwrap(),
        Some(snapshot(1, "a"))
    );
}

#[test]
fn truncated_and_foreign_files_are_rejected() {
    let good = encode(&snapshot(1, "a"));
    for bad in [
        &good[..good.len() - 1],
        &good[..10],
        &b""[..],
        &b"not a snapshot at all, but long enough to have a checksum"[..],
    ] {
        assert!(decode(bad).is_err());
    }
    assert_eq!(decode(&good).unwrap(), snapshot(1, "a"));
}

#[test]
fn a_snapshot_whose_config_does_not_match_its_hash_is_rejected() {
    let mut lying = snapshot(1, "a");
    lying.hash = snapshot(1, "b").hash;
    assert!(decode(&encode(&lying)).unwrap_err().contains("hashes to"));
}

/// The snapshot holds private keys: both generations are readable by the owner only.
#[cfg(unix)]
#[test]
fn files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let cache = SnapshotCache::new(&dir.0);
    cache.store(&snapshot(1, "a")).unwrap();
    // A temporary file left world-readable by an older version is narrowed, not reused as is.
    fs::write(dir.0.join(".snapshot.pb.tmp"), b"left over").unwrap();
    fs::set_permissions(
        dir.0.join(".snapshot.pb.tmp"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    cache.store(&snapshot(2, "b")).unwrap();
    for generation in [Generation::Current, Generation::Previous] {
        let mode = fs::metadata(cache.path(generation))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{generation:?}");
    }
}

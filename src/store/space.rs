//! Free space: what a new upload must leave free on the temp and upload filesystems
//! (`RESUMABLE_MIN_FREE_SPACE`), checked with statvfs before anything of it is stored.

use std::os::fd::{AsFd, OwnedFd};

use super::{FsStore, Result, StoreError};

/// How much must stay free: a byte count, or a share of the filesystem's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinFreeSpace {
    Bytes(u64),
    /// Hundredths of a percent (basis points) of the filesystem's size: 100 is 1 %.
    BasisPoints(u32),
}

impl MinFreeSpace {
    /// 1 % of the filesystem: a disk the uploads fill completely breaks more than the uploads.
    pub const DEFAULT: MinFreeSpace = MinFreeSpace::BasisPoints(100);

    /// `0`, `512M`, `2G` (binary multiples, as every size setting), or `5%`, `0.5%`.
    pub fn parse(text: &str) -> Option<MinFreeSpace> {
        let text = text.trim();
        if let Some(number) = text.strip_suffix('%') {
            let (whole, fraction) = number.trim().split_once('.').unwrap_or((number.trim(), ""));
            let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
            if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 2 {
                return None;
            }
            let whole: u32 = whole.parse().ok()?;
            let hundredths: u32 = format!("{fraction:0<2}").parse().ok()?;
            let points = whole.checked_mul(100)?.checked_add(hundredths)?;
            return (points <= 10_000).then_some(MinFreeSpace::BasisPoints(points));
        }
        if text == "0" {
            return Some(MinFreeSpace::Bytes(0));
        }
        crate::config::parse_size(text).map(MinFreeSpace::Bytes)
    }

    /// `0`: no check at all (`0%` still checks that the upload itself fits).
    pub fn is_off(&self) -> bool {
        *self == MinFreeSpace::Bytes(0)
    }

    /// The bytes to keep free on a filesystem of `size` bytes.
    pub fn of(&self, size: u64) -> u64 {
        match *self {
            MinFreeSpace::Bytes(bytes) => bytes,
            MinFreeSpace::BasisPoints(points) => {
                (u128::from(size) * u128::from(points) / 10_000) as u64
            }
        }
    }
}

/// One filesystem as statvfs sees it.
#[derive(Debug, Clone, Copy)]
struct Filesystem {
    device: u64,
    /// Bytes an unprivileged writer may still use.
    available: u64,
    size: u64,
}

fn filesystem(dir: &OwnedFd) -> std::io::Result<Filesystem> {
    let stat = rustix::fs::fstatvfs(dir.as_fd())?;
    let device = rustix::fs::fstat(dir.as_fd())?.st_dev;
    Ok(Filesystem {
        device,
        available: stat.f_bavail.saturating_mul(stat.f_frsize),
        size: stat.f_blocks.saturating_mul(stat.f_frsize),
    })
}

/// Refuses (with [`StoreError::LowSpace`]) an upload that is about to put `temp_bytes` in the
/// temp dir and `upload_bytes` in the upload dir when that would leave less than `reserve`
/// free on either filesystem; both count against one filesystem when the dirs share it.
pub(super) fn ensure_room(
    store: &FsStore,
    temp_bytes: u64,
    upload_bytes: u64,
    reserve: MinFreeSpace,
) -> Result<()> {
    if reserve.is_off() {
        return Ok(());
    }
    let temp = filesystem(&store.temp_root()?).map_err(StoreError::io("checking free space"))?;
    let upload =
        filesystem(&store.upload_root()?).map_err(StoreError::io("checking free space"))?;
    let shared = temp.device == upload.device;
    let both = temp_bytes.saturating_add(upload_bytes);
    let checks = [
        (
            "temp",
            &store.temp_dir,
            temp,
            if shared { both } else { temp_bytes },
        ),
        (
            "upload",
            &store.upload_dir,
            upload,
            if shared { both } else { upload_bytes },
        ),
    ];
    for (which, path, fs, needed) in checks {
        let keep = reserve.of(fs.size);
        if fs.available < needed.saturating_add(keep) {
            return Err(StoreError::LowSpace {
                which,
                path: path.clone(),
                available: fs.available,
                needed,
                keep,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_percentages() {
        assert_eq!(
            MinFreeSpace::parse("1%"),
            Some(MinFreeSpace::BasisPoints(100))
        );
        assert_eq!(
            MinFreeSpace::parse("0.5%"),
            Some(MinFreeSpace::BasisPoints(50))
        );
        assert_eq!(
            MinFreeSpace::parse("12.25%"),
            Some(MinFreeSpace::BasisPoints(1225))
        );
        assert_eq!(
            MinFreeSpace::parse("100%"),
            Some(MinFreeSpace::BasisPoints(10_000))
        );
        assert_eq!(
            MinFreeSpace::parse("512M"),
            Some(MinFreeSpace::Bytes(512 << 20))
        );
        assert_eq!(MinFreeSpace::parse("0"), Some(MinFreeSpace::Bytes(0)));
        assert_eq!(
            MinFreeSpace::parse("0%"),
            Some(MinFreeSpace::BasisPoints(0))
        );
        for bad in [
            "",
            "%",
            "101%",
            "-1%",
            "1.234%",
            "x%",
            "5 percent",
            "1e3",
            ".5%",
        ] {
            assert_eq!(MinFreeSpace::parse(bad), None, "{bad}");
        }
        assert_eq!(MinFreeSpace::BasisPoints(100).of(1000), 10);
        assert_eq!(MinFreeSpace::BasisPoints(10_000).of(u64::MAX), u64::MAX);
        assert_eq!(MinFreeSpace::Bytes(7).of(1000), 7);
    }

    #[test]
    fn a_share_of_an_ordinary_disk_is_room_and_all_of_it_is_not() {
        let root = tempfile::tempdir().unwrap();
        let store = FsStore::new(root.path(), root.path());
        ensure_room(&store, 1, 1, MinFreeSpace::Bytes(0)).unwrap();
        ensure_room(&store, 1, 1, MinFreeSpace::BasisPoints(0)).unwrap();
        match ensure_room(&store, 0, 0, MinFreeSpace::BasisPoints(10_000)) {
            Err(StoreError::LowSpace { which: "temp", .. }) => {}
            other => panic!("{other:?}"),
        }
        match ensure_room(&store, u64::MAX / 2, 0, MinFreeSpace::Bytes(1)) {
            Err(StoreError::LowSpace { needed, .. }) => assert_eq!(needed, u64::MAX / 2),
            other => panic!("{other:?}"),
        }
    }
}

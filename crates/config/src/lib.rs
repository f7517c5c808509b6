//! voxgate's configuration: the YAML model of `voxgate.yaml`, provider profiles, and strict
//! validation that reports every problem at once with file, line, column, field path and hint.
//!
//! ```no_run
//! let loaded = config::load(std::path::Path::new("/etc/voxgate/voxgate.yaml"))?;
//! println!("{} uses {}", loaded.config.site.name, loaded.profile.title);
//! # Ok::<(), config::Errors>(())
//! ```

mod diag;
mod locate;
pub mod model;
pub mod profile;
pub mod types;
mod validate;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use diag::{Diagnostic, Errors};
pub use model::Config;
pub use profile::{Profile, ProfileOrigin};

/// Where the daemon looks for its configuration by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/voxgate/voxgate.yaml";

/// The lab demo's configuration, built into the binary so that `voxgate` runs with no files.
pub const LAB_CONFIG: &str = include_str!("../../../config/voxgate.lab.yaml");

/// A validated configuration with its provider profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The configuration, defaults filled in.
    pub config: Config,
    /// The provider profile it names.
    pub profile: Profile,
    /// Where the profile came from.
    pub profile_origin: ProfileOrigin,
    /// The configuration file.
    pub path: PathBuf,
    /// SHA-256 (hex) of the configuration text and the profile text: changes when either does.
    pub digest: String,
}

/// The name that stands for the built-in lab configuration ([`LAB_CONFIG`]).
pub const LAB_REFERENCE: &str = "@lab";

/// Loads `reference`: a file path, or [`LAB_REFERENCE`] for the built-in lab configuration.
pub fn load_ref(reference: &str) -> Result<Loaded, Errors> {
    load_ref_in(reference, &standard_dirs())
}

/// Like [`load_ref`], looking profiles up in `profile_dirs` (then the built-in ones).
pub fn load_ref_in(reference: &str, profile_dirs: &[PathBuf]) -> Result<Loaded, Errors> {
    let (path, text) = read_ref(reference)?;
    load_str(&path, &text, profile_dirs)
}

/// Loads the configuration `reference` with the provider profile read from `profile_file`
/// instead of the one it names: to preview an allowlist update before installing it.
pub fn load_with_profile_file(
    reference: &str,
    profile_dirs: &[PathBuf],
    profile_file: &Path,
) -> Result<Loaded, Errors> {
    let (path, text) = read_ref(reference)?;
    let ptext = std::fs::read_to_string(profile_file)
        .map_err(|e| Errors(vec![unreadable(profile_file, "the provider profile", e)]))?;
    load_inner(
        &path,
        &text,
        profile_dirs,
        Some((ProfileOrigin::File(profile_file.to_path_buf()), ptext)),
    )
}

/// The standard profile directories ([`profile::PROFILE_DIRS`]).
pub fn standard_dirs() -> Vec<PathBuf> {
    profile::PROFILE_DIRS.iter().map(PathBuf::from).collect()
}

fn unreadable(path: &Path, what: &str, e: std::io::Error) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        path: "(file)".into(),
        message: format!("cannot read {what}: {e}"),
        hint: Some(format!(
            "pass --config FILE, or create {DEFAULT_CONFIG_PATH} from config/voxgate.example.yaml"
        )),
    }
}

fn read_ref(reference: &str) -> Result<(PathBuf, String), Errors> {
    if reference == LAB_REFERENCE {
        return Ok((PathBuf::from(LAB_REFERENCE), LAB_CONFIG.to_string()));
    }
    let path = PathBuf::from(reference);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Errors(vec![unreadable(&path, "the configuration", e)]))?;
    Ok((path, text))
}

/// Reads and validates a configuration file, looking profiles up in the standard directories.
pub fn load(path: &Path) -> Result<Loaded, Errors> {
    let (path, text) = read_ref(&path.to_string_lossy())?;
    load_str(&path, &text, &standard_dirs())
}

/// Validates configuration `text` as if read from `path`, looking profiles up in `profile_dirs`
/// and then among the built-in profiles.
pub fn load_str(path: &Path, text: &str, profile_dirs: &[PathBuf]) -> Result<Loaded, Errors> {
    load_inner(path, text, profile_dirs, None)
}

fn load_inner(
    path: &Path,
    text: &str,
    profile_dirs: &[PathBuf],
    profile_override: Option<(ProfileOrigin, String)>,
) -> Result<Loaded, Errors> {
    let doc = validate::parse(path, text).map_err(|d| Errors(vec![d]))?;
    let mut diags = validate::check_structure::<Config>(&doc);

    // The profile is checked even when the config has errors, so one run shows everything.
    let reference_path = locate::Path::of(&["provider", "profile"]);
    let reference = doc
        .value
        .pointer("/provider/profile")
        .and_then(|v| v.as_str());
    let profile = match reference.filter(|_| profile_override.is_none()) {
        None => profile_override,
        Some(reference) => {
            let config_dir = path.parent().unwrap_or(Path::new("."));
            match profile::find_profile(reference, config_dir, profile_dirs) {
                Err(msg) => {
                    diags.push(doc.diag(
                        doc.loc.value(&reference_path),
                        &reference_path,
                        msg,
                        Some(format!(
                            "known profiles: {}",
                            profile::available_profiles(profile_dirs).join(", ")
                        )),
                    ));
                    None
                }
                Ok((origin, ptext)) => Some((origin, ptext)),
            }
        }
    };
    let profile_file = profile.as_ref().map(|(o, _)| PathBuf::from(o.to_string()));
    let profile_doc = match (&profile, &profile_file) {
        (Some((_, ptext)), Some(pfile)) => match validate::parse(pfile, ptext) {
            Ok(pdoc) => {
                diags.extend(validate::check_structure::<Profile>(&pdoc));
                Some(pdoc)
            }
            Err(d) => {
                diags.push(d);
                None
            }
        },
        _ => None,
    };
    if !diags.is_empty() {
        return Err(Errors::sorted(diags));
    }
    let (Some((origin, ptext)), Some(pdoc)) = (profile, profile_doc) else {
        unreachable!("a config without a profile fails its schema check");
    };
    let config: Config = typed(&doc)?;
    let prof: Profile = typed(&pdoc)?;
    let issues = validate::check_semantics(&config, &prof);
    if !issues.is_empty() {
        let diags = issues
            .into_iter()
            .map(|i| {
                let d = if i.in_profile { &pdoc } else { &doc };
                d.diag(d.pos(&i.path), &i.path, i.message, i.hint)
            })
            .collect();
        return Err(Errors::sorted(diags));
    }
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.update([0u8]);
    h.update(ptext.as_bytes());
    let digest = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Loaded {
        config,
        profile: prof,
        profile_origin: origin,
        path: path.to_path_buf(),
        digest,
    })
}

/// Deserialises a document that passed its schema check; a failure here means the schema and
/// the model disagree, reported like any other error rather than as a panic.
fn typed<T: serde::de::DeserializeOwned>(doc: &validate::Doc) -> Result<T, Errors> {
    serde_json::from_value(doc.value.clone()).map_err(|e| {
        Errors(vec![doc.diag(
            locate::Pos { line: 1, column: 1 },
            &locate::Path::default(),
            format!("{e}"),
            Some("this is a voxgate bug: the schema accepted what the model rejects".into()),
        )])
    })
}

/// The JSON Schema of `voxgate.yaml`, for editors.
pub fn config_schema() -> serde_json::Value {
    validate::schema_of::<Config>()
}

/// The JSON Schema of a provider profile.
pub fn profile_schema() -> serde_json::Value {
    validate::schema_of::<Profile>()
}

/// The effective configuration as YAML, defaults filled in.
pub fn to_yaml(config: &Config) -> String {
    serde_norway::to_string(config).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

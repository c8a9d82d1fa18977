//! The repository's own configuration (`flowbot.toml`, the order robot's) loads, and the
//! extraction adapter it names is shipped with the repository and fits the default model, so the
//! order workflow's `extract` step runs tuned out of the box.

use flowbot_app::{AppConfig, ConfigOverrides};
use flowbot_model_runtime::fast::LoraAdapter;
use flowbot_model_runtime::fetch::DEFAULT_SHA256;
use std::path::Path;

#[test]
fn the_shipped_extraction_adapter_fits_the_default_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the app crate sits in the workspace");
    let overrides = ConfigOverrides {
        config_file: Some(root.join("flowbot.toml")),
        ..ConfigOverrides::default()
    };
    let config = AppConfig::load_from(&overrides, &|_| None).expect("flowbot.toml loads");
    assert_eq!(
        config.model.path, None,
        "the order case runs the default model"
    );
    let path = config
        .model
        .extract_adapter
        .expect("flowbot.toml names the extraction adapter");
    assert!(
        path.starts_with(root),
        "{} is in the repository",
        path.display()
    );
    let adapter = LoraAdapter::load(&path).expect("the shipped adapter loads");
    assert_eq!(
        adapter.base_sha256(),
        Some(DEFAULT_SHA256),
        "{} was trained on the default model",
        path.display()
    );
    let bytes = std::fs::metadata(&path).unwrap().len();
    assert!(
        bytes < 8 << 20,
        "{bytes} bytes: an adapter small enough to ship"
    );
}

//! `driver = "ollama"` through the real binary: a model directory laid out as Ollama 0.x writes
//! it (manifests, content-addressed blobs; no Ollama server is needed, the driver reads the
//! directory) is backed up, passes its restore test, and `tierback cat | tar -x` gives back a
//! directory Ollama can serve: every manifest and blob, byte for byte.

use std::path::Path;

use sha2::{Digest, Sha256};
use tierback_tests::{Env, files_under, sh};

/// Two models sharing their weights blob, and a half-pulled blob no manifest names yet.
fn model_dir(root: &Path) {
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    let blob = |bytes: &[u8]| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(root.join(format!("blobs/sha256-{hex}")), bytes).unwrap();
        serde_json::json!({"mediaType": "application/vnd.ollama.image.model",
                           "digest": format!("sha256:{hex}"), "size": bytes.len()})
    };
    let weights: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let weights = blob(&weights);
    for (path, template) in [
        ("registry.ollama.ai/library/llama3/8b", "{{ .Prompt }}"),
        (
            "registry.ollama.ai/library/llama3/instruct",
            "[INST] {{ .Prompt }} [/INST]",
        ),
    ] {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": blob(format!("{{\"model_format\":\"gguf\",\"tag\":\"{path}\"}}").as_bytes()),
            "layers": [weights.clone(), blob(template.as_bytes())],
        });
        let file = root.join("manifests").join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, serde_json::to_vec(&manifest).unwrap()).unwrap();
    }
    std::fs::write(root.join("blobs/sha256-partial"), b"half a model").unwrap();
}

#[test]
fn ollama_models_back_up_pass_their_restore_test_and_unpack_byte_for_byte() {
    let env = Env::new("");
    let models = env.path().join("ollama/models");
    model_dir(&models);
    env.write_config(&format!(
        "[services.ollama]\ndriver = \"ollama\"\nmodels_dir = \"{}\"\n",
        models.display()
    ));
    env.ok(&["backup", "ollama"]);
    let (_, path, facts) = env.artifacts("ollama").remove(0);
    assert_eq!(facts["blobs"], 5, "{facts}");
    assert_eq!(facts["models"].as_array().unwrap().len(), 2, "{facts}");

    let out = env.ok(&["restore-test", "ollama"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("PASSED") && said.contains("blobs match"),
        "{said}"
    );

    let restored = env.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    let tb = tierback_tests::tierback_bin();
    let unpack = sh(&format!(
        "'{}' --config '{}' cat '{path}' | tar -x -C '{}'",
        tb.display(),
        env.config().display(),
        restored.display()
    ));
    assert!(unpack.status.success(), "{unpack:?}");
    let rel = |root: &Path| -> Vec<String> {
        let mut files: Vec<String> = files_under(root)
            .into_iter()
            .map(|f| f.strip_prefix(&*root.to_string_lossy()).unwrap().to_owned())
            .collect();
        files.sort();
        files
    };
    let mut expected = rel(&models);
    expected.retain(|f| !f.ends_with("sha256-partial"));
    assert_eq!(rel(&restored), expected);
    for f in &expected {
        let a = std::fs::read(format!("{}{f}", models.display())).unwrap();
        let b = std::fs::read(format!("{}{f}", restored.display())).unwrap();
        assert!(a == b, "{f} differs after the restore");
    }

    // A weights blob damaged on disk fails the next backup, naming the model.
    let weights = files_under(&models.join("blobs"))
        .into_iter()
        .max_by_key(|f| std::fs::metadata(f).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[1_000_000] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();
    let out = env.run_with(
        &["backup", "ollama"],
        &[("TIERBACK_NOW", "2030-01-01T00:00:00Z")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("llama3:") && err.contains("does not match its digest"),
        "{err}"
    );
}

//! The optional TOML settings file.
//!
//! Keys are the long flag names with `_` for `-` (`flush_interval = "250ms"`). Each key
//! becomes the matching `STRATA_*` environment variable unless that variable is already
//! set, so precedence is: flag, then environment, then file, then default.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// Finds `--config-file FILE` (or `STRATA_CONFIG_FILE`) and exports its keys as `STRATA_*` variables.
pub fn load_into_env(
    args: impl IntoIterator<Item = OsString>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let env: std::collections::HashMap<String, String> = env.into_iter().collect();
    let Some(path) = config_path(args).or_else(|| env.get("STRATA_CONFIG_FILE").map(PathBuf::from))
    else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    for (name, value) in
        env_pairs(&text).with_context(|| format!("in config file {}", path.display()))?
    {
        if !env.contains_key(&name) {
            std::env::set_var(name, value);
        }
    }
    Ok(())
}

fn config_path(args: impl IntoIterator<Item = OsString>) -> Option<PathBuf> {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        if arg == "--config-file" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config-file=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// The `STRATA_*` variables a TOML document stands for.
pub fn env_pairs(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let table: toml::Table = text.parse().context("invalid TOML")?;
    let mut pairs = Vec::with_capacity(table.len());
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => bail!(
                "setting {key:?} must be a string, number or boolean, not {}",
                other.type_str()
            ),
        };
        pairs.push((
            format!("STRATA_{}", key.to_ascii_uppercase().replace('-', "_")),
            value,
        ));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_strata_variables() {
        let pairs = env_pairs(
            "flush_interval = \"250ms\"\nflush_bytes = 1024\nauto_create_topics = false\n",
        )
        .expect("valid toml");
        assert_eq!(
            pairs,
            vec![
                ("STRATA_AUTO_CREATE_TOPICS".to_string(), "false".to_string()),
                ("STRATA_FLUSH_BYTES".to_string(), "1024".to_string()),
                ("STRATA_FLUSH_INTERVAL".to_string(), "250ms".to_string()),
            ]
        );
    }

    #[test]
    fn tables_are_rejected_with_the_key_named() {
        let error = env_pairs("[s3]\nregion = \"x\"\n").expect_err("tables are not settings");
        assert!(error.to_string().contains("s3"));
    }

    #[test]
    fn config_flag_is_found_in_both_spellings() {
        let args = ["strata", "dev", "--config-file", "a.toml"].map(OsString::from);
        assert_eq!(config_path(args), Some(PathBuf::from("a.toml")));
        let args = ["strata", "--config-file=b.toml"].map(OsString::from);
        assert_eq!(config_path(args), Some(PathBuf::from("b.toml")));
    }

    #[test]
    fn topic_configs_are_not_mistaken_for_the_settings_file() {
        let args = [
            "strata",
            "topic",
            "create",
            "t",
            "--config",
            "retention.ms=1",
        ]
        .map(OsString::from);
        assert_eq!(config_path(args), None);
    }
}

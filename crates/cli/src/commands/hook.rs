//! `tollgate hook install | uninstall`: a git pre-commit hook that runs `tollgate scan
//! --staged`, so a commit holding a secret is stopped before it exists.

use crate::cli::HookCommand;
use crate::failure::Failure;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Marks a hook as Tollgate's: only such a hook is replaced or removed without `--force`.
const MARK: &str = "# tollgate pre-commit hook";

pub fn run(command: &HookCommand) -> Result<(), Failure> {
    match command {
        HookCommand::Install { repo, force } => {
            let hook = hook_path(repo.as_deref())?;
            if let Ok(existing) = std::fs::read_to_string(&hook) {
                if !existing.contains(MARK) && !force {
                    return Err(Failure {
                        code: 5,
                        message: format!(
                            "{} already holds a pre-commit hook that is not Tollgate's; add `tollgate scan --staged` to it, or replace it with --force",
                            hook.display()
                        ),
                    });
                }
            }
            let exe = std::env::current_exe()
                .map_err(|e| Failure::environment(format!("cannot tell where tollgate is: {e}")))?;
            let script = format!(
                "#!/bin/sh\n{MARK} (written by `tollgate hook install`; `tollgate hook uninstall` removes it)\n\
                 # Stops a commit whose staged changes hold a secret. Skip once with `git commit --no-verify`.\n\
                 if [ -x {exe} ]; then exec {exe} scan --staged --no-progress; fi\n\
                 exec tollgate scan --staged --no-progress\n",
                exe = shell_quote(&exe.display().to_string())
            );
            if let Some(dir) = hook.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Failure::environment(format!("{}: {e}", dir.display())))?;
            }
            std::fs::write(&hook, script)
                .map_err(|e| Failure::environment(format!("{}: {e}", hook.display())))?;
            make_executable(&hook)?;
            println!(
                "Installed {}: every commit runs `tollgate scan --staged` first.",
                hook.display()
            );
            Ok(())
        }
        HookCommand::Uninstall { repo } => {
            let hook = hook_path(repo.as_deref())?;
            match std::fs::read_to_string(&hook) {
                Ok(text) if text.contains(MARK) => {
                    std::fs::remove_file(&hook)
                        .map_err(|e| Failure::environment(format!("{}: {e}", hook.display())))?;
                    println!("Removed {}.", hook.display());
                    Ok(())
                }
                Ok(_) => Err(Failure {
                    code: 5,
                    message: format!("{} is not Tollgate's hook; left alone", hook.display()),
                }),
                Err(_) => {
                    println!(
                        "No pre-commit hook at {}; nothing to remove.",
                        hook.display()
                    );
                    Ok(())
                }
            }
        }
    }
}

/// Where git runs the pre-commit hook from (`core.hooksPath` and worktrees included).
fn hook_path(repo: Option<&Path>) -> Result<PathBuf, Failure> {
    let dir = repo.unwrap_or(Path::new("."));
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "hooks/pre-commit",
        ])
        .output()
        .map_err(|e| Failure::environment(format!("git could not be run: {e}")))?;
    if !output.status.success() {
        return Err(Failure::invalid(format!(
            "{} is not in a git repository: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Failure::environment(format!("{}: {e}", path.display())))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<(), Failure> {
    Ok(())
}

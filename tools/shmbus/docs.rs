//! `shmbus completions SHELL` and `shmbus man`: what clap knows of the command line, as shell
//! completion scripts and roff manual pages.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use clap_complete::Shell;

use crate::output::{CmdResult, Failure};

#[derive(Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Args, Debug)]
pub(crate) struct ManArgs {
    /// Write shmbus.1 and one page per command (shmbus-list.1, ...) into this directory instead
    /// of printing shmbus.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// `shmbus completions SHELL`: the completion script of `cmd`, the whole command line.
pub(crate) fn completions(a: &CompletionsArgs, mut cmd: clap::Command) -> CmdResult {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "shmbus", &mut out);
    io::stdout().write_all(&out)?;
    Ok(())
}

/// The roff page of `cmd`.
fn page(cmd: clap::Command) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}

/// `shmbus man`: the pages of `cmd`, the whole command line.
pub(crate) fn man(a: &ManArgs, mut cmd: clap::Command) -> CmdResult {
    cmd.build();
    let Some(dir) = &a.dir else {
        io::stdout().write_all(&page(cmd)?)?;
        return Ok(());
    };
    let write = |file: String, text: Vec<u8>| -> CmdResult {
        let path = dir.join(file);
        std::fs::write(&path, text)
            .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
    };
    let mut written = vec!["shmbus.1".to_owned()];
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        // The page's title names the command as typed: "shmbus-list".
        let name = format!("shmbus-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("shmbus {}", sub.get_name()))
            .version(env!("CARGO_PKG_VERSION"));
        write(format!("{name}.1"), page(sub)?)?;
        written.push(format!("{name}.1"));
    }
    write("shmbus.1".into(), page(cmd)?)?;
    writeln!(
        io::stdout(),
        "wrote {} manual pages to {}",
        written.len(),
        dir.display()
    )?;
    Ok(())
}

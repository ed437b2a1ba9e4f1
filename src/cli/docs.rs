//! `tokengate completions SHELL` and `tokengate man`: what shells and man(1) know of the
//! command line, generated from the clap definitions of this very binary, so they can never
//! describe another version's flags. `scripts/package` puts both in the release tarball.

use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::output::out_bytes;
use super::{Cli, CliError};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page (tokengate.1 and one per command, such as tokengate-token-create.1)
    /// into this directory instead of printing tokengate.1 on stdout.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` on stdout.
pub(super) fn completions(args: CompletionsArgs) -> Result<(), CliError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "tokengate", &mut script);
    out_bytes(&script)
}

/// Prints the main man page on stdout, or writes every page into `--dir`.
pub(super) fn man(args: ManArgs) -> Result<(), CliError> {
    if let Some(dir) = args.dir {
        std::fs::create_dir_all(&dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir))
            .map_err(|e| CliError::Runtime(format!("cannot write the man pages into {}: {e}", dir.display())))?;
        note!("man pages written to {}", dir.display());
        return Ok(());
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| CliError::Runtime(format!("cannot render the man page: {e}")))?;
    out_bytes(&page)
}

//! The command line: clap commands and output rendering. Pure local commands (`config`) run here;
//! engine commands will go through the API client.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}

//! `say!`: `println!` that returns the error (with `?`) instead of panicking when stdout is
//! closed, as when the output is piped to `head`.

macro_rules! say {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout(), format_args!("{}\n", format_args!($($arg)*)))?
    };
}

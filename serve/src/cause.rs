//! An error and its causes on one line, for people.

/// Each cause is said once: a message that already quotes its source (thiserror's
/// `"…: {source}"`) is not followed by that source again, as anyhow's `{:#}` would do.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::LoadError;

    #[test]
    fn each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let err = LoadError::Dir { dir: "/nonexistent".into(), source: io };
        assert_eq!(chain(&err), "cannot read the model folder /nonexistent: No such file or directory (os error 2)");
        let wrapped = anyhow::Error::new(std::io::Error::other("disk on fire")).context("starting");
        assert_eq!(chain(wrapped.as_ref()), "starting: disk on fire");
    }
}

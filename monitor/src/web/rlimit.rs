//! Raising the open-file limit, as Go programs do at start: the soft `RLIMIT_NOFILE` is
//! often 1024 while the hard one is far higher, and 1,000 concurrent scrapes plus the
//! maps and sockets portmon already holds would hit EMFILE below the hard limit.

/// The soft limit before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// Soft limit at start.
    pub before: u64,
    /// Soft limit now (the hard limit).
    pub after: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (no privilege needed).
///
/// # Errors
/// When the limit cannot be read or set.
pub fn raise_nofile() -> std::io::Result<Raised> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; lowering nothing, raising soft to hard only.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(Raised {
        before,
        after: limit.rlim_cur,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let raised =
            raise_nofile().unwrap_or_else(|error| panic!("raising RLIMIT_NOFILE: {error}"));
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable rlimit.
        let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) };
        assert_eq!(status, 0, "getrlimit works");
        assert_eq!(raised.after, limit.rlim_max, "soft raised to hard");
        assert_eq!(limit.rlim_cur, limit.rlim_max, "and it stays there");
        assert!(raised.before <= raised.after, "never lowered: {raised:?}");
    }
}

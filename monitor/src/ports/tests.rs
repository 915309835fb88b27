//! Tests of the policy: the port document's pairs, ranges, resolution and overrides.

use super::*;

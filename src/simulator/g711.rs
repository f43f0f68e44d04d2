//! Minimal G.711 μ-law / A-law codecs (ITU-T G.711, the classic segment algorithm).
//!
//! Private to the simulator: the crate's real codec lives in `crate::audio` and will replace
//! these once it lands.

const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

fn segment(value: i32, table: &[i32; 8]) -> usize {
    table.iter().position(|&end| value <= end).unwrap_or(8)
}

/// Encodes one linear PCM16 sample to μ-law.
pub(crate) fn ulaw_encode(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 2;
    let mask = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(8159) + 0x21;
    let seg = segment(v, &SEG_UEND);
    let code = if seg >= 8 {
        0x7F
    } else {
        ((seg as i32) << 4) | ((v >> (seg + 1)) & 0x0F)
    };
    (code ^ mask) as u8
}

/// Decodes one μ-law byte to linear PCM16.
pub(crate) fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let mut t = ((i32::from(u) & 0x0F) << 3) + 0x84;
    t <<= (i32::from(u) & 0x70) >> 4;
    let v = if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 };
    v as i16
}

/// Encodes one linear PCM16 sample to A-law.
pub(crate) fn alaw_encode(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &SEG_AEND);
    let code = if seg >= 8 {
        0x7F
    } else {
        let shift = if seg < 2 { 1 } else { seg };
        ((seg as i32) << 4) | ((v >> shift) & 0x0F)
    };
    (code ^ mask) as u8
}

/// Decodes one A-law byte to linear PCM16.
pub(crate) fn alaw_decode(byte: u8) -> i16 {
    let a = i32::from(byte ^ 0x55);
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    let v = if a & 0x80 != 0 { t } else { -t };
    v as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_are_close() {
        for s in (-32768i32..32768).step_by(97) {
            let s = s as i16;
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            let tol = (i32::from(s).abs() / 16).max(16);
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= tol,
                "ulaw {s} -> {u}"
            );
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= tol,
                "alaw {s} -> {a}"
            );
        }
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(0), 0xD5);
    }
}

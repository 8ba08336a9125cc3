//! Byte-level BPE (GPT-2 style) from a GGUF file's own vocabulary and
//! merge list (`tokenizer.ggml.model = "gpt2"`), with the pre-tokenizers
//! of GPT-2 and of SmolLM/StarCoder (digits split one by one first).
//!
//! Text is split at control tokens (`<|im_start|>`, …) when asked, then
//! pre-tokenized with the GPT-2 pattern
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! (written out by hand below: no regex engine), each piece's UTF-8
//! bytes mapped to the vocabulary's byte characters, and pairs merged by
//! rank until none is in the merge list. A byte the vocabulary has no
//! token for (SmolLM2 lacks 21: bytes that never occur in UTF-8 and six
//! control characters) is dropped, as llama.cpp drops it; for any other
//! text `decode(encode(s)) == s`.

use super::gguf::{GgufFile, Value};
use crate::error::KernelError;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash (rustc's): a multiply-rotate hash, several times faster than the
/// default SipHash on the ~100 000 short keys a vocabulary and its merges
/// insert at load; the keys come from the model file, not from users, so
/// hash flooding is not a concern.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut c = bytes.chunks_exact(8);
        for w in &mut c {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.add(u64::from_le_bytes(a));
        }
        let r = c.remainder();
        if !r.is_empty() {
            // The tail in one word: up to 7 bytes, the length in the top one.
            let mut v = (r.len() as u64) << 56;
            for (i, &b) in r.iter().enumerate() {
                v |= u64::from(b) << (8 * i);
            }
            self.add(v);
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.add(v.into());
    }
    fn write_u32(&mut self, v: u32) {
        self.add(v.into());
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Fx {
    #[inline]
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// How text is cut into pieces before BPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// The GPT-2 pattern.
    Gpt2,
    /// Every numeric character a piece of its own, then the GPT-2 pattern
    /// (llama.cpp's `smollm`, `starcoder`, `refact`, … pre-tokenizers).
    DigitsThenGpt2,
}

/// A byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Every token's bytes (control tokens: their text), one after the
    /// other: token `i` is `bytes[offs[i]..offs[i + 1]]` (one allocation,
    /// not one per token).
    bytes: Vec<u8>,
    offs: Vec<u32>,
    /// Whether the token is a control token (never produced by BPE).
    control: Vec<bool>,
    /// Byte → its single-byte token ([`NO_TOKEN`] when the vocabulary has
    /// none: bytes that never occur in UTF-8, some control characters).
    byte_token: [u32; 256],
    /// (left, right) → (rank, merged token).
    merges: FxMap<(u32, u32), (u32, u32)>,
    /// Control tokens' texts, longest first, for splitting input.
    specials: Vec<(Vec<u8>, u32)>,
    pre: PreTokenizer,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// End-of-sequence token.
    pub eos: Option<u32>,
}

/// GPT-2's reversible byte ↔ character map: printable Latin-1 bytes stand
/// for themselves, the others for U+0100 onwards in byte order.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        out[b as usize] = if printable {
            char::from_u32(b).unwrap_or('\0')
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\0')
        };
    }
    out
}

/// Marks a byte without a token: it never merges and is dropped from the
/// output, as llama.cpp drops it.
const NO_TOKEN: u32 = u32::MAX;

fn bad(msg: impl Into<String>) -> KernelError {
    KernelError::invalid("gguf", msg)
}

impl Tokenizer {
    /// The tokenizer stored in a GGUF file's metadata.
    ///
    /// # Errors
    /// [`KernelError::InvalidArgument`] naming `gguf` when the model is not
    /// byte-level BPE, a key is missing or malformed, a token is not made
    /// of the byte characters, or a merge names tokens that do not exist.
    pub fn from_gguf(f: &GgufFile) -> Result<Self, KernelError> {
        let model = f.get("tokenizer.ggml.model").and_then(Value::as_str);
        if model != Some("gpt2") {
            return Err(bad(format!(
                "tokenizer.ggml.model is {model:?}; only byte-level BPE (\"gpt2\") is read"
            )));
        }
        let strings = |key: &str| -> Result<Vec<&str>, KernelError> {
            let it = f
                .strings(key)
                .ok_or_else(|| bad(format!("{key} is missing or not an array of strings")))?;
            let n = it.len();
            let v: Vec<&str> = it.collect();
            if v.len() != n {
                return Err(bad(format!("{key}: {} of {n} strings readable", v.len())));
            }
            Ok(v)
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<u64> = match f.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
            Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let pre = match f.get("tokenizer.ggml.pre").and_then(Value::as_str) {
            Some("smollm" | "starcoder" | "refact" | "codeshell" | "exaone" | "command-r") => {
                PreTokenizer::DigitsThenGpt2
            }
            _ => PreTokenizer::Gpt2,
        };
        let id = |key: &str| f.get(key).and_then(Value::as_u64).map(|v| v as u32);
        Self::new(
            &tokens,
            &types,
            &merges,
            pre,
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
        )
    }

    /// A tokenizer from its vocabulary (in the byte-character alphabet),
    /// token types (GGUF's: 3 = control; others normal), merge list
    /// (`"left right"`, highest priority first) and pre-tokenizer.
    ///
    /// # Errors
    /// As [`Tokenizer::from_gguf`].
    pub fn new(
        vocab: &[&str],
        types: &[u64],
        merges: &[&str],
        pre: PreTokenizer,
        bos: Option<u32>,
        eos: Option<u32>,
    ) -> Result<Self, KernelError> {
        if vocab.len() > u32::MAX as usize || types.len() != vocab.len() {
            return Err(bad(format!(
                "{} tokens with {} token types",
                vocab.len(),
                types.len()
            )));
        }
        let chars = byte_chars();
        // Every byte character is below U+0144: a table, not a map.
        let mut char_byte = [None::<u8>; 0x200];
        for (b, &c) in chars.iter().enumerate() {
            char_byte[c as usize] = Some(b as u8);
        }
        let mut bytes = Vec::with_capacity(vocab.iter().map(|t| t.len()).sum());
        let mut offs = Vec::with_capacity(vocab.len() + 1);
        offs.push(0u32);
        let mut control = Vec::with_capacity(vocab.len());
        let mut ids: FxMap<&str, u32> = FxMap::default();
        ids.reserve(vocab.len());
        let mut specials = Vec::new();
        for (i, (&t, &ty)) in vocab.iter().zip(types).enumerate() {
            let is_control = ty == 3;
            if is_control {
                specials.push((t.as_bytes().to_vec(), i as u32));
                bytes.extend_from_slice(t.as_bytes());
            } else {
                for c in t.chars() {
                    let b = char_byte
                        .get(c as usize)
                        .copied()
                        .flatten()
                        .ok_or_else(|| {
                            bad(format!("token {i} ({t:?}) is not in the byte alphabet"))
                        })?;
                    bytes.push(b);
                }
            }
            // At most the vocabulary's text: < 4 GiB for any real model.
            offs.push(u32::try_from(bytes.len()).map_err(|_| bad("the vocabulary exceeds 4 GiB"))?);
            control.push(is_control);
            if !is_control {
                ids.entry(t).or_insert(i as u32);
            }
        }
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        let mut byte_token = [NO_TOKEN; 256];
        for (b, &c) in chars.iter().enumerate() {
            let mut s = [0u8; 4];
            if let Some(&t) = ids.get(&*c.encode_utf8(&mut s)) {
                byte_token[b] = t;
            }
        }
        let mut merge_map = FxMap::default();
        merge_map.reserve(merges.len());
        let mut joined = String::new();
        for (rank, m) in merges.iter().enumerate() {
            let (l, r) = m
                .split_once(' ')
                .ok_or_else(|| bad(format!("merge {rank} ({m:?}) is not \"left right\"")))?;
            let find = |s: &str| {
                ids.get(s)
                    .copied()
                    .ok_or_else(|| bad(format!("merge {rank} ({m:?}) names unknown token {s:?}")))
            };
            joined.clear();
            joined.push_str(l);
            joined.push_str(r);
            let (li, ri, ji) = (find(l)?, find(r)?, find(&joined)?);
            merge_map.entry((li, ri)).or_insert((rank as u32, ji));
        }
        for (name, t) in [("bos", bos), ("eos", eos)] {
            if let Some(t) = t
                && t as usize >= vocab.len()
            {
                return Err(bad(format!("{name} token {t} is past the vocabulary")));
            }
        }
        Ok(Tokenizer {
            bytes,
            offs,
            control,
            byte_token,
            merges: merge_map,
            specials,
            pre,
            bos,
            eos,
        })
    }

    /// Whether every byte of `s` has a token (then `decode(encode(s, false))
    /// == s`).
    pub fn covers(&self, s: &str) -> bool {
        s.bytes().all(|b| self.byte_token[b as usize] != NO_TOKEN)
    }

    /// Tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.control.len()
    }

    /// Token `id`'s bytes (a control token's text); `None` past the
    /// vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (&s, &e) = (self.offs.get(i)?, self.offs.get(i + 1)?);
        self.bytes.get(s as usize..e as usize)
    }

    /// Whether `id` is a control token (`<|im_end|>`, …).
    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize).copied().unwrap_or(false)
    }

    /// The id of control token `text`, if the vocabulary has it.
    pub fn special(&self, text: &str) -> Option<u32> {
        self.specials
            .iter()
            .find(|(t, _)| t == text.as_bytes())
            .map(|&(_, id)| id)
    }

    /// Token ids of `text`; with `parse_special`, control-token texts in it
    /// become their tokens (else they are encoded as plain text).
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let hit = if parse_special {
                self.find_special(rest)
            } else {
                None
            };
            match hit {
                Some((at, len, id)) => {
                    self.encode_plain(&rest[..at], &mut out);
                    out.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.encode_plain(rest, &mut out);
                    break;
                }
            }
        }
        out
    }

    /// The first control-token text in `s`: (byte offset, length, id).
    fn find_special(&self, s: &str) -> Option<(usize, usize, u32)> {
        let b = s.as_bytes();
        (0..b.len())
            .filter(|&i| b[i] == b'<' || !b[i].is_ascii())
            .find_map(|i| {
                self.specials
                    .iter()
                    .find(|(t, _)| b[i..].starts_with(t))
                    .map(|(t, id)| (i, t.len(), *id))
            })
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        match self.pre {
            PreTokenizer::Gpt2 => {
                for piece in gpt2_pieces(text) {
                    self.bpe(piece.as_bytes(), out);
                }
            }
            PreTokenizer::DigitsThenGpt2 => {
                let mut start = 0;
                for (i, c) in text.char_indices() {
                    if c.is_numeric() {
                        for piece in gpt2_pieces(&text[start..i]) {
                            self.bpe(piece.as_bytes(), out);
                        }
                        self.bpe(&text.as_bytes()[i..i + c.len_utf8()], out);
                        start = i + c.len_utf8();
                    }
                }
                for piece in gpt2_pieces(&text[start..]) {
                    self.bpe(piece.as_bytes(), out);
                }
            }
        }
    }

    /// Merges one piece's byte tokens, lowest rank first (leftmost on
    /// ties), until no adjacent pair is in the merge list.
    fn bpe(&self, bytes: &[u8], out: &mut Vec<u32>) {
        let mut syms: Vec<u32> = bytes.iter().map(|&b| self.byte_token[b as usize]).collect();
        while syms.len() > 1 {
            let best = syms
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| self.merges.get(&(w[0], w[1])).map(|&(r, t)| (r, i, t)))
                .min();
            let Some((_, i, t)) = best else { break };
            syms[i] = t;
            syms.remove(i + 1);
        }
        out.extend(syms.into_iter().filter(|&t| t != NO_TOKEN));
    }

    /// The bytes of `ids`, concatenated (ids past the vocabulary are
    /// skipped).
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        ids.iter()
            .filter_map(|&t| self.token_bytes(t))
            .flatten()
            .copied()
            .collect()
    }

    /// The text of `ids` (invalid UTF-8 — a character cut between tokens —
    /// replaced by U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }
}

/// The GPT-2 pre-tokenizer pattern's matches in `s`, in order (they cover
/// `s`).
pub(crate) fn gpt2_pieces(s: &str) -> Vec<&str> {
    let cs: Vec<(usize, char)> = s.char_indices().collect();
    let n = cs.len();
    let at = |i: usize| if i < n { cs[i].0 } else { s.len() };
    let letter = |c: char| c.is_alphabetic();
    let number = |c: char| c.is_numeric();
    let other = |c: char| !c.is_whitespace() && !c.is_alphabetic() && !c.is_numeric();
    let run = |mut j: usize, f: &dyn Fn(char) -> bool| {
        while j < n && f(cs[j].1) {
            j += 1;
        }
        j
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let c = cs[i].1;
        let next = |k: usize| cs.get(i + k).map(|p| p.1);
        // 's 't 'm 'd 're 've 'll
        let end = if c == '\'' {
            match (next(1), next(2)) {
                (Some('s' | 't' | 'm' | 'd'), _) => Some(i + 2),
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => {
                    Some(i + 3)
                }
                _ => None,
            }
        } else {
            None
        };
        let end = end.unwrap_or_else(|| {
            // ` ?X+` for the three classes: an optional space, then a run.
            let (j, d) = if c == ' ' {
                (i + 1, next(1))
            } else {
                (i, Some(c))
            };
            match d {
                Some(d) if letter(d) => run(j, &letter),
                Some(d) if number(d) => run(j, &number),
                Some(d) if other(d) => run(j, &other),
                _ => {
                    // Whitespace: `\s+(?!\S)` — the run, less its last
                    // character when a non-space follows (that character
                    // then leads the next piece) — else `\s+`.
                    let e = run(i, &|c: char| c.is_whitespace());
                    if e < n && e - i > 1 { e - 1 } else { e }
                }
            }
        });
        out.push(&s[at(i)..at(end)]);
        i = end;
    }
    out
}

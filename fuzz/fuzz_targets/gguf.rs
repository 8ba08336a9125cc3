//! The GGUF reader and the model loader on arbitrary bytes: `GgufFile::
//! from_bytes`, every tensor's `weights`, the tokenizer and the Llama model
//! (and one forward step when it loads). Any input: `Ok` or `Err`, never a
//! panic, an allocation sized by a corrupt count, or a read outside the
//! buffer (ASan).
#![no_main]

use libfuzzer_sys::fuzz_target;
use transformer_kernels::Config;
use transformer_kernels::model::{GgufFile, LlamaModel, Tokenizer};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for t in f.tensors.clone() {
        let _ = f.weights(&t.name);
        let _ = f.to_f32(&t.name);
    }
    if let Ok(t) = Tokenizer::from_gguf(&f) {
        let ids = t.encode("Hi <|im_start|> 12 wörld", true);
        let _ = t.decode(&ids);
    }
    if let Ok(mut m) = LlamaModel::from_gguf(&f, None, 8) {
        let mut c = m.new_cache(4);
        let _ = m.forward(&[0, 1], &mut c, &Config::default());
    }
});

//! The helpers a script finds as globals: `base64`, `hex`, `sha256`,
//! `hmacSha256`, `urlEncode`, `urlDecode`, and `console.log` (into the
//! gateway's log with the message id). Nothing else is added: no `require`,
//! `import`, `fetch` or `process` exists, so calling one is a ReferenceError.

use std::cell::RefCell;
use std::rc::Rc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rquickjs::{Ctx, Function, Object};
use sha2::{Digest, Sha256};

/// Installs the helpers on the context's global object. `message_id` holds
/// the id of the message being transformed, for `console.log`.
pub(super) fn install(
    ctx: &Ctx<'_>,
    message_id: Rc<RefCell<String>>,
    script: String,
) -> rquickjs::Result<()> {
    let g = ctx.globals();
    let b64 = Object::new(ctx.clone())?;
    b64.set(
        "encode",
        Function::new(ctx.clone(), |s: String| {
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        })?,
    )?;
    b64.set(
        "decode",
        Function::new(ctx.clone(), |s: String| -> Option<String> {
            let b = base64::engine::general_purpose::STANDARD
                .decode(s.trim().as_bytes())
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s.trim()))
                .ok()?;
            String::from_utf8(b).ok()
        })?,
    )?;
    g.set("base64", b64)?;
    let hex = Object::new(ctx.clone())?;
    hex.set(
        "encode",
        Function::new(ctx.clone(), |s: String| hex::encode(s.as_bytes()))?,
    )?;
    hex.set(
        "decode",
        Function::new(ctx.clone(), |s: String| -> Option<String> {
            String::from_utf8(hex::decode(s.trim()).ok()?).ok()
        })?,
    )?;
    g.set("hex", hex)?;
    g.set(
        "sha256",
        Function::new(ctx.clone(), |s: String| {
            hex::encode(Sha256::digest(s.as_bytes()))
        })?,
    )?;
    g.set(
        "hmacSha256",
        Function::new(ctx.clone(), |key: String, data: String| {
            let mut m = <Hmac<Sha256>>::new_from_slice(key.as_bytes())
                .expect("HMAC takes a key of any length");
            m.update(data.as_bytes());
            hex::encode(m.finalize().into_bytes())
        })?,
    )?;
    g.set(
        "urlEncode",
        Function::new(ctx.clone(), |s: String| {
            percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })?,
    )?;
    g.set(
        "urlDecode",
        Function::new(ctx.clone(), |s: String| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })?,
    )?;
    let log = Function::new(ctx.clone(), move |text: String| {
        tracing::info!(
            transform = %script,
            message_id = %message_id.borrow(),
            "console.log: {}",
            cut(&text, LOG_MAX)
        );
    })?;
    // Objects are shown as JSON, the way a user reading the log expects.
    let make: Function = ctx.eval(
        "(function (log) { return { log: function (...a) { log(a.map(function (x) { return typeof x === 'string' ? x : JSON.stringify(x); }).join(' ')); } }; })",
    )?;
    let console: Object = make.call((log,))?;
    g.set("console", console)?;
    Ok(())
}

/// Characters of one `console.log` line kept at most.
const LOG_MAX: usize = 2000;

/// `s` cut to at most `max` characters.
fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

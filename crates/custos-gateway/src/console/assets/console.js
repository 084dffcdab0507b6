// custos console: the little script the pages need. No inline handlers (the CSP forbids
// them); everything hangs off data attributes.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Filters apply as soon as a choice changes.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
  // Changes that cannot be undone ask first.
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
});

// Inclusion proofs, verified here against a public key the reader supplies: the checkpoint's
// Ed25519 signature (a C2SP signed note), the leaf hash of the event's bytes, and the audit
// path to the checkpoint's root (RFC 9162, 2.1.3.2). What `custos audit verify-proof` checks.
var custosProof = (function () {
  "use strict";
  var enc = new TextEncoder();

  function b64(s) {
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }
  function hex(bytes) {
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function unhex(s) {
    if (!/^[0-9a-f]{64}$/.test(s)) { throw new Error("the proof holds something that is not a 64-hex-digit hash"); }
    var out = new Uint8Array(32);
    for (var i = 0; i < 32; i++) { out[i] = parseInt(s.substr(2 * i, 2), 16); }
    return out;
  }
  function concat(parts) {
    var n = parts.reduce(function (a, p) { return a + p.length; }, 0);
    var out = new Uint8Array(n), at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }
  function sha256(bytes) {
    return crypto.subtle.digest("SHA-256", bytes).then(function (d) { return new Uint8Array(d); });
  }
  function same(a, b) {
    if (a.length !== b.length) { return false; }
    for (var i = 0; i < a.length; i++) { if (a[i] !== b[i]) { return false; } }
    return true;
  }

  // `name+id+base64(0x01 ‖ key)`; the id is checked against the key.
  function parseKey(text) {
    var s = text.trim(), p1 = s.indexOf("+"), p2 = s.indexOf("+", p1 + 1);
    if (p1 < 1 || p2 < 0) { throw new Error("a ledger public key reads name+id+key"); }
    var name = s.slice(0, p1), id = s.slice(p1 + 1, p2), blob = b64(s.slice(p2 + 1));
    if (!/^[0-9a-f]{8}$/.test(id)) { throw new Error("the key id must be 8 hex digits"); }
    if (blob.length !== 33 || blob[0] !== 1) { throw new Error("only Ed25519 keys (algorithm 1, 32 bytes) are supported"); }
    return sha256(concat([enc.encode(name + "\n"), blob])).then(function (h) {
      if (hex(h.slice(0, 4)) !== id) { throw new Error("the key id does not match the key"); }
      return { name: name, id: id, key: blob.slice(1) };
    });
  }

  // The signed text of a note and this key's signature on it.
  function parseNote(note, key) {
    var split = note.lastIndexOf("\n\n");
    if (split < 0) { throw new Error("the checkpoint has no blank line before its signatures"); }
    var text = note.slice(0, split + 1), sig = null;
    note.slice(split + 2).split("\n").forEach(function (line) {
      var prefix = "\u2014 " + key.name + " ";
      if (line.indexOf(prefix) === 0) {
        var blob = b64(line.slice(prefix.length));
        if (blob.length === 68 && hex(blob.slice(0, 4)) === key.id) { sig = blob.slice(4); }
      }
    });
    if (!sig) { throw new Error("the checkpoint carries no signature by " + key.name); }
    var lines = text.split("\n");
    return { text: text, sig: sig, origin: lines[0], size: BigInt(lines[1]), root: b64(lines[2]) };
  }

  function rootFrom(index, size, leaf, path) {
    var fn = index, sn = size - 1n, r = Promise.resolve(leaf);
    path.forEach(function (p) {
      r = r.then(function (h) {
        if (sn === 0n) { throw new Error("the audit path is too long for the tree"); }
        var next;
        if ((fn & 1n) === 1n || fn === sn) {
          next = sha256(concat([new Uint8Array([1]), p, h]));
          if ((fn & 1n) === 0n) {
            while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
          }
        } else {
          next = sha256(concat([new Uint8Array([1]), h, p]));
        }
        fn >>= 1n; sn >>= 1n;
        return next;
      });
    });
    return r.then(function (h) {
      if (sn !== 0n) { throw new Error("the audit path is too short for the tree"); }
      return h;
    });
  }

  function verify(proof, keyText) {
    if (!window.crypto || !crypto.subtle) {
      return Promise.reject(new Error("this browser offers no Web Crypto here (it needs HTTPS or localhost)"));
    }
    var index = BigInt(proof.index), size = BigInt(proof.tree_size), key, note;
    if (index >= size) { return Promise.reject(new Error("the entry lies beyond the checkpoint")); }
    return parseKey(keyText).then(function (k) {
      key = k;
      note = parseNote(proof.checkpoint, key);
      if (note.size !== size) { throw new Error("the proof is for size " + size + " but the checkpoint is for size " + note.size); }
      return crypto.subtle.importKey("raw", key.key, { name: "Ed25519" }, false, ["verify"]);
    }).then(function (pub) {
      return crypto.subtle.verify({ name: "Ed25519" }, pub, note.sig, enc.encode(note.text));
    }).then(function (ok) {
      if (!ok) { throw new Error("the checkpoint's signature does not verify with this key"); }
      return sha256(concat([new Uint8Array([0]), enc.encode(proof.event)]));
    }).then(function (leaf) {
      if (proof.leaf_hash && proof.leaf_hash !== hex(leaf)) { throw new Error("the event's bytes do not hash to the stated leaf hash"); }
      return rootFrom(index, size, leaf, proof.proof.map(unhex));
    }).then(function (root) {
      if (!same(root, note.root)) { throw new Error("the audit path does not lead to the checkpoint's root"); }
      return "entry " + index + " is in the log " + note.origin + " of size " + size + " signed by " + key.name;
    });
  }

  return { verify: verify };
})();

document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("verify");
  if (!button) { return; }
  button.addEventListener("click", function () {
    var out = document.getElementById("verify-result");
    out.textContent = "Verifying…";
    out.className = "";
    fetch(button.getAttribute("data-proof"), { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("the proof could not be fetched (" + r.status + ")"); }
        return r.json();
      })
      .then(function (proof) { return custosProof.verify(proof, document.getElementById("pubkey").value); })
      .then(function (msg) { out.textContent = "Verified: " + msg + "."; out.className = "notice ok"; })
      .catch(function (e) { out.textContent = "NOT verified: " + e.message; out.className = "notice error"; });
  });
});

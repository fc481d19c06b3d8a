// Key pairs (WebCrypto), PKCS#10 requests and PKCS#12 files (PKI.js), renewal signatures.
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { page } from "./ui.js";

const subtle = () => {
  if (!globalThis.crypto || !globalThis.crypto.subtle) throw new Error("no_webcrypto");
  return globalThis.crypto.subtle;
};

const RSA = { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" };
const EC = { name: "ECDSA", namedCurve: "P-256" };
const OID_RSA = "1.2.840.113549.1.1.1";
const OID_EC = "1.2.840.10045.2.1";
const CURVES = { "1.2.840.10045.3.1.7": "P-256", "1.3.132.0.34": "P-384" };
const ITERATIONS = 100000; // PBKDF2 (native) and the PKCS#12 MAC
const P12_ENC = { name: "AES-CBC", length: 256 };

export const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");

export function toBase64(buf) {
  let s = "";
  for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
  return btoa(s);
}

export function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export function pem(label, der) {
  const b64 = toBase64(der).replace(/.{64}/g, "$&\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

export function unpem(text) {
  const body = text.replace(/-----(BEGIN|END) [A-Z0-9 ]+-----/g, "").replace(/\s+/g, "");
  return fromBase64(body);
}

// SHA-256 of the subjectPublicKey BIT STRING contents: the same for a key, its CSR and its
// certificate, whatever the encoding of the algorithm parameters.
async function spkiId(info) {
  const bits = info.subjectPublicKey.valueBlock.valueHexView;
  return hex(await subtle().digest("SHA-256", bits));
}

export async function keyId(publicKey) {
  const der = await subtle().exportKey("spki", publicKey);
  return spkiId(pkijs.PublicKeyInfo.fromBER(der));
}

export function parseCertificate(pemText) {
  return pkijs.Certificate.fromBER(unpem(pemText));
}

export const certificateKeyId = (cert) => spkiId(cert.subjectPublicKeyInfo);

// Extractable, so the subscriber can export a PKCS#12 backup: the price is that code running in
// this origin could read the key; the CSP (scripts from this server only) is the guard.
export async function generateKeyPair(kind) {
  return subtle().generateKey(kind === "EC" ? EC : RSA, true, ["sign", "verify"]);
}

export async function makeCsr(keyPair, commonName) {
  const csr = new pkijs.CertificationRequest();
  csr.subject.typesAndValues.push(new pkijs.AttributeTypeAndValue({
    type: "2.5.4.3", value: new asn1js.Utf8String({ value: commonName }),
  }));
  csr.attributes = [];
  await csr.subjectPublicKeyInfo.importKey(keyPair.publicKey);
  await csr.sign(keyPair.privateKey, "SHA-256");
  const der = csr.toSchema().toBER(false);
  return { der: new Uint8Array(der), pem: pem("CERTIFICATE REQUEST", der) };
}

// RSA: PKCS#1 v1.5 with SHA-256; EC: ECDSA with SHA-256 as a DER SEQUENCE { r, s }.
export async function signChallenge(privateKey, data) {
  if (privateKey.algorithm.name === "ECDSA") {
    const raw = await subtle().sign({ name: "ECDSA", hash: "SHA-256" }, privateKey, data);
    return new Uint8Array(pkijs.createCMSECDSASignature(raw));
  }
  return new Uint8Array(await subtle().sign({ name: "RSASSA-PKCS1-v1_5" }, privateKey, data));
}

function utf8(text) {
  return new TextEncoder().encode(text).buffer;
}

// node-forge (3DES PKCS#12) is a separate bundle, static/portal-legacy.js, loaded on first use
let legacyLib = null;
function loadLegacy() {
  if (!legacyLib) {
    legacyLib = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = page.legacy_js || "/static/portal-legacy.js";
      script.onload = () => (globalThis.CaPortalLegacyP12
        ? resolve(globalThis.CaPortalLegacyP12) : reject(new Error("legacy bundle")));
      script.onerror = () => { legacyLib = null; reject(new Error("legacy bundle")); };
      document.head.append(script);
    });
  }
  return legacyLib;
}

// The legacy 3DES/SHA-1 format is offered for RSA keys only (node-forge has no EC keys).
export const legacyExportable = (privateKey) => privateKey.algorithm.name === "RSASSA-PKCS1-v1_5";

// format "aes256" (default): PBES2/AES-256-CBC/PBKDF2-SHA256 + HMAC-SHA256 (PKI.js);
// "3des": pbeWithSHAAnd3-KeyTripleDES-CBC + HMAC-SHA1 (node-forge, RSA keys only).
// chainPems: the CA certificates (issuing, root), stored as further certificate bags without
// a localKeyId, so importers take them as CA certificates and not as the key's own.
export async function exportPkcs12(privateKey, certPem, password, friendlyName, format = "aes256",
  chainPems = []) {
  const pass = utf8(password);
  const pkcs8 = await subtle().exportKey("pkcs8", privateKey);
  const localId = new Uint8Array(await subtle().digest("SHA-1", unpem(certPem)));
  if (format === "3des") {
    if (!legacyExportable(privateKey)) throw new Error("legacy_rsa_only");
    const lib = await loadLegacy();
    return lib.exportPkcs12Legacy(new Uint8Array(pkcs8), unpem(certPem), password, friendlyName,
      localId, chainPems.map((p) => unpem(p)));
  }
  const cert = parseCertificate(certPem);
  const attrs = () => [
    new pkijs.Attribute({ type: "1.2.840.113549.1.9.21",
      values: [new asn1js.OctetString({ valueHex: localId })] }),
    new pkijs.Attribute({ type: "1.2.840.113549.1.9.20",
      values: [new asn1js.BmpString({ value: friendlyName })] }),
  ];
  const pfx = new pkijs.PFX({
    parsedValue: {
      integrityMode: 0,
      authenticatedSafe: new pkijs.AuthenticatedSafe({
        parsedValue: {
          safeContents: [
            { privacyMode: 0, value: new pkijs.SafeContents({ safeBags: [new pkijs.SafeBag({
              bagId: "1.2.840.113549.1.12.10.1.2",
              bagValue: new pkijs.PKCS8ShroudedKeyBag({
                parsedValue: pkijs.PrivateKeyInfo.fromBER(pkcs8) }),
              bagAttributes: attrs(),
            })] }) },
            { privacyMode: 1, value: new pkijs.SafeContents({ safeBags: [new pkijs.SafeBag({
              bagId: "1.2.840.113549.1.12.10.1.3",
              bagValue: new pkijs.CertBag({ parsedValue: cert }),
              bagAttributes: attrs(),
            }), ...chainPems.map((p) => new pkijs.SafeBag({
              bagId: "1.2.840.113549.1.12.10.1.3",
              bagValue: new pkijs.CertBag({ parsedValue: parseCertificate(p) }),
            }))] }) },
          ],
        },
      }),
    },
  });
  const enc = { password: pass, contentEncryptionAlgorithm: P12_ENC,
    hmacHashAlgorithm: "SHA-256", iterationCount: ITERATIONS };
  const safe = pfx.parsedValue.authenticatedSafe;
  await safe.parsedValue.safeContents[0].value.safeBags[0].bagValue.makeInternalValues(enc);
  await safe.makeInternalValues({ safeContents: [{}, enc] });
  await pfx.makeInternalValues({ password: pass, iterations: ITERATIONS,
    pbkdf2HashAlgorithm: "SHA-256", hmacHashAlgorithm: "SHA-256" });
  return new Uint8Array(pfx.toSchema().toBER(false));
}

async function importPkcs8(info) {
  const der = info.toSchema().toBER(false);
  const oid = info.privateKeyAlgorithm.algorithmId;
  let alg;
  if (oid === OID_RSA) alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  else if (oid === OID_EC) {
    const curve = CURVES[info.privateKeyAlgorithm.algorithmParams.valueBlock.toString()];
    if (!curve) throw new Error("unsupported curve");
    alg = { name: "ECDSA", namedCurve: curve };
  } else throw new Error("unsupported key type");
  return subtle().importKey("pkcs8", der, alg, true, ["sign"]);
}

// The private key belongs to the certificate when their public parts (JWK n / x,y) agree.
async function sameKey(privateKey, cert) {
  const jwk = await subtle().exportKey("jwk", privateKey);
  const spki = cert.subjectPublicKeyInfo.toSchema().toBER(false);
  const alg = privateKey.algorithm.name === "ECDSA"
    ? { name: "ECDSA", namedCurve: privateKey.algorithm.namedCurve }
    : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  const pub = await subtle().exportKey("jwk", await subtle().importKey("spki", spki, alg, true, ["verify"]));
  return jwk.kty === "EC" ? jwk.x === pub.x && jwk.y === pub.y : jwk.n === pub.n && jwk.e === pub.e;
}

async function readPkcs12(bytes, password) {
  const pass = utf8(password);
  const pfx = pkijs.PFX.fromBER(bytes);
  await pfx.parseInternalValues({ password: pass, checkIntegrity: true });
  const safe = pfx.parsedValue.authenticatedSafe;
  await safe.parseInternalValues({ safeContents: safe.safeContents.map(() => ({ password: pass })) });
  const keys = [];
  const certs = [];
  for (const contents of safe.parsedValue.safeContents) {
    for (const bag of contents.value.safeBags) {
      if (bag.bagId === "1.2.840.113549.1.12.10.1.2") {
        await bag.bagValue.parseInternalValues({ password: pass });
        keys.push(bag.bagValue.parsedValue);
      } else if (bag.bagId === "1.2.840.113549.1.12.10.1.1") {
        keys.push(bag.bagValue);
      } else if (bag.bagId === "1.2.840.113549.1.12.10.1.3") {
        certs.push(bag.bagValue.parsedValue);
      }
    }
  }
  return { keys, certs };
}

// Files PKI.js cannot decrypt (3DES or RC2 bags: older systems, `openssl pkcs12 -legacy`)
async function readPkcs12Legacy(bytes, password) {
  const lib = await loadLegacy();
  const { keys, certs } = lib.importPkcs12Legacy(bytes, password);
  return { keys: keys.map((d) => pkijs.PrivateKeyInfo.fromBER(d)),
    certs: certs.map((d) => pkijs.Certificate.fromBER(d)) };
}

// -> [{ privateKey, certPem, id }] for every key in the file that has its certificate there
export async function importPkcs12(bytes, password) {
  let read;
  try {
    read = await readPkcs12(bytes, password);
  } catch (err) {
    try {
      read = await readPkcs12Legacy(bytes, password);
    } catch {
      throw err;
    }
  }
  const out = [];
  for (const info of read.keys) {
    const privateKey = await importPkcs8(info);
    for (const cert of read.certs) {
      if (await sameKey(privateKey, cert).catch(() => false)) {
        const der = cert.toSchema().toBER(false);
        out.push({ privateKey, cert, certPem: pem("CERTIFICATE", der), id: await certificateKeyId(cert) });
        break;
      }
    }
  }
  return out;
}

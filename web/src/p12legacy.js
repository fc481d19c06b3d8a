// The legacy PKCS#12 format, for older systems that cannot read PBES2/AES: both bags encrypted
// with pbeWithSHAAnd3-KeyTripleDES-CBC (RFC 7292 appendix C), HMAC-SHA1 MAC, 2048 iterations,
// like `openssl pkcs12 -export -legacy -certpbe PBE-SHA1-3DES`; and reading such files (3DES or
// RC2-40 bags) back on import. Built with node-forge, since neither WebCrypto nor PKI.js has 3DES.
// forge reads RSA keys only, so EC keys are refused on export.
//
// This file is its own bundle (static/portal-legacy.js, global CaPortalLegacyP12), which pki.js
// loads only when the legacy format is used, so the main bundle does not carry forge.
import forge from "node-forge/lib/forge";
import "node-forge/lib/asn1";
import "node-forge/lib/des";
import "node-forge/lib/hmac";
import "node-forge/lib/oids";
import "node-forge/lib/pbe";
import "node-forge/lib/pkcs12";
import "node-forge/lib/rsa";
import "node-forge/lib/sha1";
import "node-forge/lib/util";
import "node-forge/lib/x509";

const { asn1, pki } = forge;
const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;
export const LEGACY_ITERATIONS = 2048;
const SALT_BYTES = 8;

const raw = (bytes) => forge.util.binary.raw.encode(new Uint8Array(bytes));
const oid = (name) => asn1.create(U, T.OID, false, asn1.oidToDer(pki.oids[name]).getBytes());
const seq = (items) => asn1.create(U, T.SEQUENCE, true, items);
const octets = (bytes) => asn1.create(U, T.OCTETSTRING, false, bytes);
const explicit0 = (items) => asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, items);
const int = (n) => asn1.create(U, T.INTEGER, false, asn1.integerToDer(n).getBytes());

function randomBytes(n) {
  return raw(globalThis.crypto.getRandomValues(new Uint8Array(n)));
}

function bagAttributes(localKeyId, friendlyName) {
  const attr = (name, value) => seq([oid(name), asn1.create(U, T.SET, true, [value])]);
  // forge writes a BMPSTRING value as UTF-16 code units itself
  return asn1.create(U, T.SET, true, [
    attr("localKeyId", octets(localKeyId)),
    attr("friendlyName", asn1.create(U, T.BMPSTRING, false, friendlyName)),
  ]);
}

// ContentInfo { data, OCTET STRING (DER of SafeContents) }
const dataInfo = (safeContents) => seq([oid("data"),
  explicit0([octets(asn1.toDer(safeContents).getBytes())])]);

// ContentInfo { encryptedData, EncryptedData { 0, { data, pbeWithSHAAnd3-KeyTripleDES-CBC, [0] } } }
function encryptedDataInfo(safeContents, password) {
  const salt = randomBytes(SALT_BYTES);
  const saltBuf = () => forge.util.createBuffer(salt);
  const key = pki.pbe.generatePkcs12Key(password, saltBuf(), 1, LEGACY_ITERATIONS, 24);
  const iv = pki.pbe.generatePkcs12Key(password, saltBuf(), 2, LEGACY_ITERATIONS, 8);
  const cipher = forge.des.createEncryptionCipher(key);
  cipher.start(iv);
  cipher.update(asn1.toDer(safeContents));
  if (!cipher.finish()) throw new Error("3DES encryption failed");
  const algorithm = seq([oid("pbeWithSHAAnd3-KeyTripleDES-CBC"),
    seq([octets(salt), int(LEGACY_ITERATIONS)])]);
  return seq([oid("encryptedData"), explicit0([seq([int(0), seq([oid("data"), algorithm,
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, cipher.output.getBytes())])])])]);
}

// PKCS#8 DER of an RSA key (from WebCrypto) + certificate DER -> PKCS#12 DER (Uint8Array)
export function exportPkcs12Legacy(pkcs8Der, certDer, password, friendlyName, localKeyId,
  chainDers = []) {
  // throws for anything but an RSA key: forge has no EC private keys
  const key = pki.privateKeyFromAsn1(asn1.fromDer(raw(pkcs8Der)));
  const keyInfo = pki.wrapRsaPrivateKey(pki.privateKeyToAsn1(key));
  const attrs = () => bagAttributes(raw(localKeyId), friendlyName);
  const shrouded = pki.encryptPrivateKeyInfo(keyInfo, password,
    { algorithm: "3des", count: LEGACY_ITERATIONS, saltSize: SALT_BYTES });
  const keyBag = seq([oid("pkcs8ShroudedKeyBag"), explicit0([shrouded]), attrs()]);
  const certBag = seq([oid("certBag"), explicit0([seq([oid("x509Certificate"),
    explicit0([octets(raw(certDer))])])]), attrs()]);
  // the CA chain: certificate bags without attributes
  const caBags = chainDers.map((der) => seq([oid("certBag"), explicit0([seq([oid("x509Certificate"),
    explicit0([octets(raw(der))])])])]));
  const authSafe = seq([dataInfo(seq([keyBag])), encryptedDataInfo(seq([certBag, ...caBags]), password)]);
  const authSafeDer = asn1.toDer(authSafe).getBytes();

  const macSalt = randomBytes(SALT_BYTES);
  const macKey = pki.pbe.generatePkcs12Key(password, forge.util.createBuffer(macSalt), 3,
    LEGACY_ITERATIONS, 20);
  const hmac = forge.hmac.create();
  hmac.start("sha1", macKey);
  hmac.update(authSafeDer);
  const macData = seq([
    seq([seq([oid("sha1"), asn1.create(U, T.NULL, false, "")]), octets(hmac.digest().getBytes())]),
    octets(macSalt), int(LEGACY_ITERATIONS)]);
  const pfx = seq([int(3), seq([oid("data"), explicit0([octets(authSafeDer)])]), macData]);
  return forge.util.binary.raw.decode(asn1.toDer(pfx).getBytes());
}

// PKCS#12 DER (any format forge reads: 3DES, RC2-40 or PBES2 bags, SHA-1/SHA-2 MAC) ->
// { keys: [PKCS#8 DER], certs: [certificate DER] }; throws on a wrong password.
export function importPkcs12Legacy(bytes, password) {
  const p12 = forge.pkcs12.pkcs12FromAsn1(asn1.fromDer(raw(bytes)), false, password);
  const der = (obj) => forge.util.binary.raw.decode(asn1.toDer(obj).getBytes());
  const keys = [];
  const certs = [];
  for (const type of [pki.oids.pkcs8ShroudedKeyBag, pki.oids.keyBag]) {
    for (const bag of p12.getBags({ bagType: type })[type] || []) {
      // an EC key stays as its PrivateKeyInfo in bag.asn1
      keys.push(der(bag.key ? pki.wrapRsaPrivateKey(pki.privateKeyToAsn1(bag.key)) : bag.asn1));
    }
  }
  for (const bag of p12.getBags({ bagType: pki.oids.certBag })[pki.oids.certBag] || []) {
    certs.push(der(bag.cert ? pki.certificateToAsn1(bag.cert) : bag.asn1));
  }
  return { keys, certs };
}

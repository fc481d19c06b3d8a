// Private keys of this browser in IndexedDB, as non-serialisable CryptoKey objects, keyed by
// the SHA-256 of the public key bits (hex), which links a key to its CSR and certificate.
const DB = "ca-portal";
const STORE = "keys";

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "id" });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function run(mode, fn) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req && req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

export const put = (record) => run("readwrite", (s) => s.put(record));
export const get = (id) => run("readonly", (s) => s.get(id));
export const all = () => run("readonly", (s) => s.getAll());

export async function update(id, changes) {
  const rec = await get(id);
  if (!rec) return null;
  const next = { ...rec, ...changes };
  await put(next);
  return next;
}

// The registration desk's checks before anything is sent; the same rules as
// gateway/identity.py (which decides): national ID and resident certificate check digits (new
// and old form), company number (divisible by 5, 7th-digit-7 rule).
const CODES = { A: 10, B: 11, C: 12, D: 13, E: 14, F: 15, G: 16, H: 17, I: 34, J: 18, K: 19,
  L: 20, M: 21, N: 22, O: 35, P: 23, Q: 24, R: 25, S: 26, T: 27, U: 28, V: 29, W: 32, X: 30,
  Y: 31, Z: 33 };

function letterNumberOk(first, second, digits) {
  const code = CODES[first];
  let total = Math.floor(code / 10) + (code % 10) * 9 + second * 8;
  [7, 6, 5, 4, 3, 2, 1].forEach((w, i) => { total += w * Number(digits[i]); });
  total += Number(digits[7]);
  return total % 10 === 0;
}

function companyOk(v) {
  if (!/^[0-9]{8}$/.test(v)) return false;
  let total = 0;
  [1, 2, 1, 2, 1, 2, 4, 1].forEach((w, i) => {
    const p = w * Number(v[i]);
    total += Math.floor(p / 10) + (p % 10);
  });
  return total % 5 === 0 || (v[6] === "7" && (total + 1) % 5 === 0);
}

export function idNumberOk(raw) {
  const v = String(raw || "").trim().toUpperCase();
  if (/^[A-Z][1289][0-9]{8}$/.test(v)) return letterNumberOk(v[0], Number(v[1]), v.slice(2));
  if (/^[A-Z][A-D][0-9]{8}$/.test(v)) return letterNumberOk(v[0], CODES[v[1]] % 10, v.slice(2));
  return companyOk(v);
}

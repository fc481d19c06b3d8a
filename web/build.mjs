// Bundle src/main.js (+ PKI.js, asn1js, pvtsutils) into gateway/portal/static/portal.js.
// `node build.mjs` (npm run build). The output is committed so a checkout works without Node;
// scripts/bootstrap.sh rebuilds it when web/src, package-lock.json or this file changed.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const out = new URL("../gateway/portal/static/portal.js", import.meta.url).pathname;
const here = new URL(".", import.meta.url).pathname;
const result = await build({
  entryPoints: [new URL("src/main.js", import.meta.url).pathname],
  bundle: true,
  format: "iife",
  target: ["chrome109", "firefox115", "safari16"],
  minify: true,
  legalComments: "eof",
  outfile: out,
  logLevel: "warning",
  metafile: true,
});

// third-party licences (all permissive: BSD-3-Clause, MIT, 0BSD) ship next to the bundle
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.add(m[1]);
}
let notices = "Third-party code bundled into portal.js\n\n";
for (const name of [...packages].sort()) {
  const dir = join(here, "node_modules", name);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
  notices += `==== ${name} ${pkg.version} (${pkg.license}) ====\n`;
  notices += file ? readFileSync(join(dir, file), "utf8") : "(no licence file in the package)\n";
  notices += "\n";
}
writeFileSync(out.replace(/portal\.js$/, "portal.js.LICENSES.txt"), notices);
// ...and inside the bundle itself, so the notices travel with every copy of it
writeFileSync(out, readFileSync(out, "utf8") + `/*!\n${notices.replaceAll("*/", "* /")}*/\n`);

// the stamp scripts/bootstrap.sh compares, the same as
//   cd web && LC_ALL=C cat package-lock.json build.mjs src/*.js | sha256sum
const inputs = ["package-lock.json", "build.mjs",
  ...readdirSync(join(here, "src")).filter((f) => f.endsWith(".js")).sort().map((f) => join("src", f))];
const h = createHash("sha256");
for (const f of inputs) h.update(readFileSync(join(here, f)));
writeFileSync(join(here, "bundle.sha256"), h.digest("hex") + "\n");
console.log(`built ${out}`);

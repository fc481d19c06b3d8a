// Bundle src/main.js (+ PKI.js, asn1js and their helpers) into gateway/portal/static/portal.js,
// src/p12legacy.js (+ node-forge) into portal-legacy.js and src/operator.js (+ uPlot) into
// gateway/operator/static/operator.js.
// `node build.mjs [ROOT]` (npm run build): writes under ROOT (default: the repository), so
// scripts/check_bundle.py can rebuild into a temporary folder and compare with the committed
// output, which is committed so that a checkout runs without Node.
import { build } from "esbuild";
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const root = process.argv[2] ? resolve(process.argv[2]) : join(here, "..");
const staticDir = join(root, "gateway", "portal", "static");
const operatorDir = join(root, "gateway", "operator", "static");
mkdirSync(staticDir, { recursive: true });
mkdirSync(operatorDir, { recursive: true });
const common = {
  bundle: true,
  format: "iife",
  target: ["chrome109", "firefox115", "safari16"],
  minify: true,
  legalComments: "eof",
  logLevel: "warning",
  metafile: true,
};
// portal.js: every page; portal-legacy.js: node-forge for the legacy 3DES PKCS#12 format,
// loaded by pki.js only when that format is used (global CaPortalLegacyP12); operator.js: the
// operator page with uPlot (its stylesheet is copied next to it as uplot.css)
const bundles = [
  { entry: "src/main.js", out: "portal.js" },
  { entry: "src/p12legacy.js", out: "portal-legacy.js", globalName: "CaPortalLegacyP12" },
  { entry: "src/operator.js", out: "operator.js", dir: operatorDir },
];
// a dual-licensed package is used under the licence named here
const ELECTED = { "node-forge": "BSD-3-Clause" };

function packagesOf(metafile) {
  const packages = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
    if (m) packages.add(m[1]);
  }
  return packages;
}

// third-party licences (all permissive: BSD-3-Clause, MIT, 0BSD) ship next to the bundles
function notices(packages) {
  let text = "Third-party code bundled into portal.js, portal-legacy.js and operator.js\n\n";
  for (const name of [...packages].sort()) {
    const dir = join(here, "node_modules", name);
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
    const licence = ELECTED[name] ? `${pkg.license}, used under ${ELECTED[name]}` : pkg.license;
    text += `==== ${name} ${pkg.version} (${licence}) ====\n`;
    text += file ? readFileSync(join(dir, file), "utf8") : "(no licence file in the package)\n";
    text += "\n";
  }
  return text;
}

const all = new Set();
for (const b of bundles) {
  const outfile = join(b.dir || staticDir, b.out);
  const result = await build({ ...common, entryPoints: [join(here, b.entry)], outfile,
    globalName: b.globalName });
  const packages = packagesOf(result.metafile);
  for (const p of packages) all.add(p);
  // the notices travel inside every copy of each bundle too
  const text = notices(packages).replaceAll("*/", "* /");
  writeFileSync(outfile, readFileSync(outfile, "utf8") + `/*!\n${text}*/\n`);
  console.log(`built ${outfile}`);
}
writeFileSync(join(staticDir, "portal.js.LICENSES.txt"), notices(all));
writeFileSync(join(operatorDir, "uplot.css"),
  readFileSync(join(here, "node_modules", "uplot", "dist", "uPlot.min.css"), "utf8"));


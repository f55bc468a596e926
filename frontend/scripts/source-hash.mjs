// The hash of everything the bundle is built from, written beside the bundle as
// static/SOURCE_HASH. tests/dashboard/test_bundle.py computes the same hash in Python
// (no Node needed) and fails when the committed bundle was built from other sources.
//
// Inputs: the files listed in INPUTS and every file under the folders in TREES, taken
// as bytes. The hash is sha256 over the lines "<path>\0<sha256 of the file>\n", paths
// relative to frontend/ with "/" separators, sorted by their UTF-8 bytes.
//
//   node scripts/source-hash.mjs           prints the hash
//   node scripts/source-hash.mjs --write   writes it to the bundle's SOURCE_HASH
//   node scripts/source-hash.mjs --check   exits 1 when SOURCE_HASH differs
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const FRONTEND = join(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = join(FRONTEND, "..", "src", "ml_dash", "dashboard", "static", "SOURCE_HASH");
const INPUTS = ["index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts",
  "scripts/source-hash.mjs"];
const TREES = ["src", "public"];

function walk(folder) {
  const found = [];
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) found.push(...walk(path));
    else if (entry.isFile()) found.push(path);
  }
  return found;
}

export function sourceHash() {
  const paths = INPUTS.map((p) => join(FRONTEND, p));
  for (const tree of TREES) paths.push(...walk(join(FRONTEND, tree)));
  const names = paths.map((p) => relative(FRONTEND, p).split(sep).join("/"));
  names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const all = createHash("sha256");
  for (const name of names) {
    const digest = createHash("sha256").update(readFileSync(join(FRONTEND, name))).digest("hex");
    all.update(`${name}\0${digest}\n`);
  }
  return all.digest("hex");
}

const hash = sourceHash();
if (process.argv.includes("--write")) {
  writeFileSync(OUT, hash + "\n");
} else if (process.argv.includes("--check")) {
  const recorded = existsSync(OUT) ? readFileSync(OUT, "utf8").trim() : "(none)";
  if (recorded !== hash) {
    console.error(`static/SOURCE_HASH is ${recorded}, the sources hash to ${hash}: run npm run build`);
    process.exit(1);
  }
} else {
  console.log(hash);
}

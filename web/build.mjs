// Bundles the web wallet with esbuild: src/app.ts into dist/wallet.js with the page and its
// style beside it (what the node serves at /wallet); with --test, also the protocol module and
// the wallet model for node (test-build/), which `node --test test/` imports.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const here = new URL(".", import.meta.url).pathname;
mkdirSync(`${here}dist`, { recursive: true });
await build({
  entryPoints: [`${here}src/app.ts`],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  legalComments: "none",
  outfile: `${here}dist/wallet.js`,
  logLevel: "warning",
});
for (const file of ["index.html", "style.css"]) copyFileSync(`${here}src/${file}`, `${here}dist/${file}`);

if (process.argv.includes("--test")) {
  rmSync(`${here}test-build`, { recursive: true, force: true });
  await build({
    entryPoints: [`${here}src/protocol.ts`, `${here}src/model.ts`],
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    splitting: true,
    outdir: `${here}test-build`,
    outExtension: { ".js": ".mjs" },
    logLevel: "warning",
  });
}

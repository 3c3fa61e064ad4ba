const n = parseInt(require("fs").readFileSync(0, "utf8").trim(), 10);
process.stdout.write("Hello\n".repeat(n));

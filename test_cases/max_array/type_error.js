const data = require("fs").readFileSync(0, "utf8").trim().split(/\s+/).map(Number);
const values = data.slice(1, data[0] + 1);
let best = values[0];
for (const v of values) if (v > best) best = v;
const report = undefined;
console.log(report.format(best));

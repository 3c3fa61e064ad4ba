const data = require("fs").readFileSync(0, "utf8").trim().split(/\s+/).map(BigInt);
const values = data.slice(1, Number(data[0]) + 1);
values.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
console.log(values.join(" "));

// Test harness for idserver/static/js/qrcode.js: reads a JSON list of cases on stdin,
// writes one JSON result per case. Errors are reported per case so one bad input does not
// hide the others.
"use strict";

const path = require("path");
const BuergerQR = require(path.join(__dirname, "..", "..", "idserver", "static", "js", "qrcode.js"));

// Just enough of the DOM for toSvg: records the element tree and its attributes.
const fakeDocument = {
  createElementNS(ns, name) {
    return {
      ns,
      name,
      attributes: {},
      children: [],
      setAttribute(key, value) { this.attributes[key] = String(value); },
      appendChild(child) { this.children.push(child); },
    };
  },
};

function toPlain(node) {
  return { ns: node.ns, name: node.name, attributes: node.attributes, children: node.children.map(toPlain) };
}

function run(testCase) {
  const opts = Object.assign({}, testCase.opts || {});
  if (testCase.svg) {
    opts.document = fakeDocument;
    return { svg: toPlain(BuergerQR.toSvg(testCase.text, opts)) };
  }
  const qr = BuergerQR.encode(testCase.text, opts);
  return {
    size: qr.size,
    version: qr.version,
    mask: qr.mask,
    rows: qr.modules.map((row) => row.map((dark) => (dark ? "1" : "0")).join("")),
  };
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const results = JSON.parse(input).map((testCase) => {
    try {
      return run(testCase);
    } catch (err) {
      return { error: err.name, message: err.message };
    }
  });
  process.stdout.write(JSON.stringify(results));
});

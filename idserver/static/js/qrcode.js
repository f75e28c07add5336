// Bürger-ID QR Code encoder: byte mode, versions 1–15, ECL L/M/Q/H (ISO/IEC 18004).
// Self-contained so the desktop login page can redraw its animated code without a server round trip.
// Copyright the Bürger-ID authors. Licensed under the EUPL-1.2.
(function (root) {
  "use strict";

  var MAX_VERSION = 15;

  // ISO/IEC 18004 Table 9, versions 1–15: [EC codewords per block, number of blocks].
  var EC_TABLE = {
    L: [[7, 1], [10, 1], [15, 1], [20, 1], [26, 1], [18, 2], [20, 2], [24, 2], [30, 2], [18, 4],
      [20, 4], [24, 4], [26, 4], [30, 4], [22, 6]],
    M: [[10, 1], [16, 1], [26, 1], [18, 2], [24, 2], [16, 4], [18, 4], [22, 4], [22, 5], [26, 5],
      [30, 5], [22, 8], [22, 9], [24, 9], [24, 10]],
    Q: [[13, 1], [22, 1], [18, 2], [26, 2], [18, 4], [24, 4], [18, 6], [22, 6], [20, 8], [24, 8],
      [28, 8], [26, 10], [24, 12], [20, 16], [30, 12]],
    H: [[17, 1], [28, 1], [22, 2], [16, 4], [22, 4], [28, 4], [26, 5], [26, 6], [24, 8], [28, 8],
      [24, 11], [28, 11], [22, 16], [24, 16], [24, 18]],
  };
  // Format information encodes the level with these two bits (Table 12), not in L<M<Q<H order.
  var ECL_BITS = { L: 1, M: 0, Q: 3, H: 2 };

  // Annex E: alignment pattern centre coordinates, versions 2–15 (version 1 has none).
  var ALIGNMENT = [[], [6, 18], [6, 22], [6, 26], [6, 30], [6, 34], [6, 22, 38], [6, 24, 42],
    [6, 26, 46], [6, 28, 50], [6, 30, 54], [6, 32, 58], [6, 34, 62], [6, 26, 46, 66], [6, 26, 48, 70]];

  // ---- GF(256) with the QR field polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D) ----
  var EXP = new Uint8Array(512);
  var LOG = new Uint8Array(256);
  (function buildField() {
    var x = 1;
    for (var i = 0; i < 255; i++) {
      EXP[i] = x;
      LOG[x] = i;
      x <<= 1;
      if (x & 0x100) x ^= 0x11d;
    }
    // Doubling the table lets gfMul skip a modulo.
    for (var j = 255; j < 512; j++) EXP[j] = EXP[j - 255];
  })();

  function gfMul(a, b) {
    return a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]];
  }

  // Generator polynomials g(x) = (x - a^0)(x - a^1)...(x - a^(n-1)), one per degree in use,
  // built once at load. Coefficients are stored highest degree first, leading 1 omitted.
  var GENERATORS = {};
  Object.keys(EC_TABLE).forEach(function (level) {
    EC_TABLE[level].forEach(function (entry) {
      var degree = entry[0];
      if (GENERATORS[degree]) return;
      var poly = [1];
      for (var i = 0; i < degree; i++) {
        var next = new Array(poly.length + 1).fill(0);
        for (var k = 0; k < poly.length; k++) {
          next[k] ^= poly[k];
          next[k + 1] ^= gfMul(poly[k], EXP[i]);
        }
        poly = next;
      }
      GENERATORS[degree] = poly.slice(1);
    });
  });

  // Remainder of data(x)·x^n divided by g(x): the EC codewords (polynomial long division, LFSR style).
  function reedSolomon(data, degree) {
    var gen = GENERATORS[degree];
    var rem = new Array(degree).fill(0);
    for (var i = 0; i < data.length; i++) {
      var factor = data[i] ^ rem.shift();
      rem.push(0);
      if (factor === 0) continue;
      for (var k = 0; k < degree; k++) rem[k] ^= gfMul(gen[k], factor);
    }
    return rem;
  }

  // ---- BCH codes for format (15,5) and version (18,6) information ----
  function bchRemainder(value, generator, genBits) {
    var shifted = value << (genBits - 1);
    for (var bit = 31; bit >= genBits - 1; bit--) {
      if ((shifted >>> bit) & 1) shifted ^= generator << (bit - genBits + 1);
    }
    return shifted;
  }

  function formatBits(ecl, mask) {
    var data = (ECL_BITS[ecl] << 3) | mask;
    // The XOR mask keeps the format word from ever being all zeros (7.9.1).
    return ((data << 10) | bchRemainder(data, 0x537, 11)) ^ 0x5412;
  }

  function versionBits(version) {
    return (version << 12) | bchRemainder(version, 0x1f25, 13);
  }

  // ---- Symbol matrix: flat arrays indexed y * size + x ----
  function Matrix(version) {
    this.version = version;
    this.size = version * 4 + 17;
    this.dark = new Uint8Array(this.size * this.size);
    this.reserved = new Uint8Array(this.size * this.size);
    this.drawFunctionPatterns();
  }

  Matrix.prototype.set = function (x, y, isDark) {
    var i = y * this.size + x;
    this.dark[i] = isDark ? 1 : 0;
    this.reserved[i] = 1;
  };

  Matrix.prototype.drawFunctionPatterns = function () {
    var size = this.size;
    var x, y;
    for (var i = 0; i < size; i++) {
      this.set(6, i, i % 2 === 0);
      this.set(i, 6, i % 2 === 0);
    }
    this.drawFinder(3, 3);
    this.drawFinder(size - 4, 3);
    this.drawFinder(3, size - 4);

    var centres = ALIGNMENT[this.version - 1];
    var last = centres.length - 1;
    for (var a = 0; a <= last; a++) {
      for (var b = 0; b <= last; b++) {
        // Skip the three positions that would overlap a finder pattern.
        if ((a === 0 && b === 0) || (a === 0 && b === last) || (a === last && b === 0)) continue;
        for (y = -2; y <= 2; y++) {
          for (x = -2; x <= 2; x++) {
            this.set(centres[a] + x, centres[b] + y, Math.max(Math.abs(x), Math.abs(y)) !== 1);
          }
        }
      }
    }

    // Reserve format and version areas now so data placement skips them; values come later.
    this.drawFormat(0);
    if (this.version >= 7) {
      var bits = versionBits(this.version);
      for (var k = 0; k < 18; k++) {
        var bit = (bits >>> k) & 1;
        var near = Math.floor(k / 3);
        var far = size - 11 + (k % 3);
        this.set(far, near, bit);
        this.set(near, far, bit);
      }
    }
  };

  // A 7×7 finder plus its one-module light separator, clipped at the symbol edge.
  Matrix.prototype.drawFinder = function (cx, cy) {
    for (var dy = -4; dy <= 4; dy++) {
      for (var dx = -4; dx <= 4; dx++) {
        var x = cx + dx;
        var y = cy + dy;
        if (x < 0 || y < 0 || x >= this.size || y >= this.size) continue;
        var ring = Math.max(Math.abs(dx), Math.abs(dy));
        this.set(x, y, ring !== 2 && ring !== 4);
      }
    }
  };

  // Two copies of the 15-bit format word (7.9.1, Figure 25); bit 0 is the least significant.
  Matrix.prototype.drawFormat = function (word) {
    var size = this.size;
    for (var i = 0; i <= 5; i++) this.set(8, i, (word >>> i) & 1);
    this.set(8, 7, (word >>> 6) & 1);
    this.set(8, 8, (word >>> 7) & 1);
    this.set(7, 8, (word >>> 8) & 1);
    for (var j = 9; j < 15; j++) this.set(14 - j, 8, (word >>> j) & 1);
    for (var k = 0; k < 8; k++) this.set(size - 1 - k, 8, (word >>> k) & 1);
    for (var m = 8; m < 15; m++) this.set(8, size - 15 + m, (word >>> m) & 1);
    this.set(8, size - 8, 1); // the "dark module", always dark
  };

  // Codewords go in two-module-wide columns, zig-zagging up and down from the bottom right;
  // the vertical timing pattern in column 6 is stepped over entirely (7.7.3).
  Matrix.prototype.placeCodewords = function (codewords) {
    var size = this.size;
    var bitIndex = 0;
    var totalBits = codewords.length * 8;
    var upward = true;
    for (var right = size - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5;
      for (var step = 0; step < size; step++) {
        var y = upward ? size - 1 - step : step;
        for (var col = 0; col < 2; col++) {
          var x = right - col;
          var i = y * size + x;
          if (this.reserved[i]) continue;
          // Remainder bits beyond the last codeword stay light (0).
          if (bitIndex < totalBits) {
            this.dark[i] = (codewords[bitIndex >>> 3] >>> (7 - (bitIndex & 7))) & 1;
          }
          bitIndex++;
        }
      }
      upward = !upward;
    }
  };

  // Table 10 mask conditions; i is the row, j the column.
  var MASKS = [
    function (i, j) { return (i + j) % 2 === 0; },
    function (i) { return i % 2 === 0; },
    function (i, j) { return j % 3 === 0; },
    function (i, j) { return (i + j) % 3 === 0; },
    function (i, j) { return (Math.floor(i / 2) + Math.floor(j / 3)) % 2 === 0; },
    function (i, j) { return ((i * j) % 2) + ((i * j) % 3) === 0; },
    function (i, j) { return (((i * j) % 2) + ((i * j) % 3)) % 2 === 0; },
    function (i, j) { return (((i + j) % 2) + ((i * j) % 3)) % 2 === 0; },
  ];

  // XOR is its own inverse, so the same call applies and removes a mask.
  Matrix.prototype.applyMask = function (mask) {
    var size = this.size;
    var cond = MASKS[mask];
    for (var y = 0; y < size; y++) {
      for (var x = 0; x < size; x++) {
        var i = y * size + x;
        if (!this.reserved[i] && cond(y, x)) this.dark[i] ^= 1;
      }
    }
  };

  // 7.8.3 penalty score over the whole symbol, format information included, as a reader sees it.
  Matrix.prototype.penalty = function () {
    var size = this.size;
    var dark = this.dark;
    var score = 0;
    var darkCount = 0;
    var line = new Uint8Array(size);
    for (var pass = 0; pass < 2; pass++) {
      for (var a = 0; a < size; a++) {
        for (var b = 0; b < size; b++) line[b] = pass === 0 ? dark[a * size + b] : dark[b * size + a];
        score += runPenalty(line) + finderLikePenalty(line);
      }
    }
    for (var y = 0; y < size; y++) {
      for (var x = 0; x < size; x++) {
        var c = dark[y * size + x];
        darkCount += c;
        if (x < size - 1 && y < size - 1 && c === dark[y * size + x + 1] &&
            c === dark[(y + 1) * size + x] && c === dark[(y + 1) * size + x + 1]) {
          score += 3; // N2, counted per overlapping 2×2 block
        }
      }
    }
    // N4: 10 points for each full 5% step the dark share strays from 50%.
    var total = size * size;
    score += Math.floor(Math.abs(darkCount * 20 - total * 10) / total) * 10;
    return score;
  };

  // N1: a run of 5 + i same-coloured modules scores 3 + i.
  function runPenalty(line) {
    var score = 0;
    var run = 1;
    for (var k = 1; k <= line.length; k++) {
      if (k < line.length && line[k] === line[k - 1]) {
        run++;
      } else {
        if (run >= 5) score += run - 2;
        run = 1;
      }
    }
    return score;
  }

  // N3: dark-light-dark-dark-dark-light-dark with four light modules on either side. Outside the
  // symbol counts as light because the quiet zone is, so patterns at the edge are found too.
  var FINDER_RUN = [1, 0, 1, 1, 1, 0, 1];
  function finderLikePenalty(line) {
    var n = line.length;
    var score = 0;
    for (var s = 0; s + 7 <= n; s++) {
      var match = true;
      for (var k = 0; k < 7 && match; k++) match = line[s + k] === FINDER_RUN[k];
      if (!match) continue;
      if (isLight(line, s - 4, s) || isLight(line, s + 7, s + 11)) score += 40;
    }
    return score;
  }

  function isLight(line, from, to) {
    for (var k = Math.max(from, 0); k < Math.min(to, line.length); k++) if (line[k]) return false;
    return true;
  }

  // ---- Data encoding ----
  // Modules left for data once function patterns are placed, floor-divided into codewords.
  var TOTAL_CODEWORDS = [];
  for (var v = 1; v <= MAX_VERSION; v++) {
    var blank = new Matrix(v);
    var free = 0;
    for (var r = 0; r < blank.reserved.length; r++) free += blank.reserved[r] ? 0 : 1;
    TOTAL_CODEWORDS[v] = Math.floor(free / 8);
  }

  function dataCodewords(version, ecl) {
    var entry = EC_TABLE[ecl][version - 1];
    return TOTAL_CODEWORDS[version] - entry[0] * entry[1];
  }

  // Mode indicator 0100 (byte), then an 8-bit count up to version 9 and a 16-bit count after.
  function countBits(version) {
    return version <= 9 ? 8 : 16;
  }

  function chooseVersion(byteLength, ecl) {
    for (var version = 1; version <= MAX_VERSION; version++) {
      var needed = 4 + countBits(version) + byteLength * 8;
      if (needed <= dataCodewords(version, ecl) * 8) return version;
    }
    throw new RangeError("BuergerQR: " + byteLength + " bytes do not fit version " + MAX_VERSION +
      " at level " + ecl);
  }

  function buildDataCodewords(bytes, version, ecl) {
    var capacity = dataCodewords(version, ecl);
    var out = [];
    var acc = 0;
    var accBits = 0;
    function put(value, bits) {
      for (var b = bits - 1; b >= 0; b--) {
        acc = (acc << 1) | ((value >>> b) & 1);
        if (++accBits === 8) {
          out.push(acc);
          acc = 0;
          accBits = 0;
        }
      }
    }
    put(4, 4);
    put(bytes.length, countBits(version));
    for (var i = 0; i < bytes.length; i++) put(bytes[i], 8);
    // Terminator of up to four zero bits, then zero bits to the next byte boundary.
    var room = capacity * 8 - (out.length * 8 + accBits);
    put(0, Math.min(4, room));
    if (accBits) put(0, 8 - accBits);
    for (var pad = 0; out.length < capacity; pad++) out.push(pad % 2 === 0 ? 0xec : 0x11);
    return out;
  }

  // Split into blocks (short blocks first, long ones carry one more data codeword), add EC to
  // each, then interleave column by column so a burst of damage spreads over many blocks (7.6).
  function addErrorCorrection(data, version, ecl) {
    var entry = EC_TABLE[ecl][version - 1];
    var ecLength = entry[0];
    var blockCount = entry[1];
    var total = TOTAL_CODEWORDS[version];
    var longBlocks = total % blockCount;
    var shortData = Math.floor(total / blockCount) - ecLength;
    var blocks = [];
    var offset = 0;
    for (var b = 0; b < blockCount; b++) {
      var length = shortData + (b >= blockCount - longBlocks ? 1 : 0);
      var chunk = data.slice(offset, offset + length);
      offset += length;
      blocks.push({ data: chunk, ec: reedSolomon(chunk, ecLength) });
    }
    var result = [];
    for (var i = 0; i <= shortData; i++) {
      for (var k = 0; k < blockCount; k++) if (i < blocks[k].data.length) result.push(blocks[k].data[i]);
    }
    for (var e = 0; e < ecLength; e++) {
      for (var m = 0; m < blockCount; m++) result.push(blocks[m].ec[e]);
    }
    return result;
  }

  // ---- Public API ----
  function encode(text, opts) {
    var ecl = String((opts && opts.ecl) || "M").toUpperCase();
    if (!EC_TABLE[ecl]) throw new RangeError("BuergerQR: unknown error correction level " + ecl);
    var forcedMask = opts && opts.mask;
    var bytes = new TextEncoder().encode(String(text));
    var version = chooseVersion(bytes.length, ecl);
    var codewords = addErrorCorrection(buildDataCodewords(bytes, version, ecl), version, ecl);

    var matrix = new Matrix(version);
    matrix.placeCodewords(codewords);
    var mask = forcedMask;
    if (typeof mask !== "number") {
      var best = Infinity;
      for (var candidate = 0; candidate < 8; candidate++) {
        matrix.applyMask(candidate);
        matrix.drawFormat(formatBits(ecl, candidate));
        var score = matrix.penalty();
        if (score < best) {
          best = score;
          mask = candidate;
        }
        matrix.applyMask(candidate);
      }
    } else if (mask < 0 || mask > 7 || mask % 1 !== 0) {
      throw new RangeError("BuergerQR: mask must be an integer 0-7");
    }
    matrix.applyMask(mask);
    matrix.drawFormat(formatBits(ecl, mask));

    var size = matrix.size;
    var modules = [];
    for (var y = 0; y < size; y++) {
      var row = new Array(size);
      for (var x = 0; x < size; x++) row[x] = matrix.dark[y * size + x] === 1;
      modules.push(row);
    }
    return { size: size, version: version, ecl: ecl, mask: mask, modules: modules };
  }

  var SVG_NS = "http://www.w3.org/2000/svg";
  var QUIET_ZONE = 4;

  // One path of horizontal runs keeps the DOM small when the code is redrawn every second.
  // Colours are set as attributes, never inline styles, so a strict CSP needs no exception.
  function toSvg(text, opts) {
    opts = opts || {};
    var doc = opts.document || (root && root.document);
    var qr = encode(text, opts);
    var extent = qr.size + 2 * QUIET_ZONE;
    var d = [];
    for (var y = 0; y < qr.size; y++) {
      for (var x = 0; x < qr.size; x++) {
        if (!qr.modules[y][x]) continue;
        var start = x;
        while (x + 1 < qr.size && qr.modules[y][x + 1]) x++;
        var run = x - start + 1;
        d.push("M" + (start + QUIET_ZONE) + " " + (y + QUIET_ZONE) + "h" + run + "v1h-" + run + "z");
      }
    }
    var svg = doc.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + extent + " " + extent);
    svg.setAttribute("shape-rendering", "crispEdges");
    if (opts.label) {
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", opts.label);
    } else {
      svg.setAttribute("aria-hidden", "true"); // the caller's container names the image
    }
    if (opts.light !== null) {
      // The quiet zone must stay light even on a dark page background.
      var bg = doc.createElementNS(SVG_NS, "rect");
      bg.setAttribute("width", String(extent));
      bg.setAttribute("height", String(extent));
      bg.setAttribute("fill", opts.light || "#fff");
      svg.appendChild(bg);
    }
    var path = doc.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d.join(""));
    path.setAttribute("fill", opts.dark || "#000");
    svg.appendChild(path);
    return svg;
  }

  var BuergerQR = { encode: encode, toSvg: toSvg };
  if (root) root.BuergerQR = BuergerQR;
  if (typeof module !== "undefined") module.exports = BuergerQR;
})(typeof window !== "undefined" ? window : null);

// The reference GPT-2 encoder (npm gpt-3-encoder) on whole files, printing
// [[ids of FILE 1], [ids of FILE 2], ...] as JSON, to compare with qj-tokenize.
//   node gpt2_reference_encode.js ENCODER_DIR [--as-shipped] FILE...
//   node gpt2_reference_encode.js ENCODER_DIR [--as-shipped] --bench REPEAT FILE...
//       prints {"bytes", "tokens", "seconds", "mb_per_s"} instead: the file
//       list encoded REPEAT times, one file at a time.
// Files are read as Node reads text: fs.readFileSync(path, 'utf8'), which
// turns each maximal invalid UTF-8 subpart into U+FFFD and keeps a BOM.
//
// The reference's encode() appends with Array.concat, which is quadratic in
// the number of tokens of one call (minutes for the Brown corpus). So by
// default long texts go to it in chunks, cut only before a space that follows
// a non-whitespace character. That cut is a piece boundary of GPT-2's pattern
// (a piece holds a space after other characters only inside a whitespace run)
// and the piece before it is a letter, number or symbol run, which the cut
// does not change; so the ids are exactly those of one call on the whole
// text. --as-shipped calls encode() once per file instead.
const fs = require('fs');
const path = require('path');

const args = process.argv.slice(2);
const { encode } = require(path.resolve(args.shift()));
const asShipped = args[0] === '--as-shipped';
if (asShipped) args.shift();

const kChunkChars = 4096;

function encodeInChunks(text) {
  const ids = [];
  for (let start = 0; start < text.length;) {
    let cut = Math.min(start + kChunkChars, text.length);
    while (cut < text.length && !(text[cut] === ' ' && !/\s/u.test(text[cut - 1]))) cut++;
    for (const id of encode(text.slice(start, cut))) ids.push(id);
    start = cut;
  }
  return ids;
}

const encodeText = asShipped ? encode : encodeInChunks;

if (args[0] === '--bench') {
  const repeat = parseInt(args[1], 10);
  const files = args.slice(2);
  const texts = files.map((file) => fs.readFileSync(file, 'utf8'));
  const bytes = repeat * files.reduce((sum, file) => sum + fs.statSync(file).size, 0);
  let tokens = 0;
  const start = process.hrtime.bigint();
  for (let r = 0; r < repeat; r++) for (const text of texts) tokens += encodeText(text).length;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({ bytes, tokens, seconds, mb_per_s: bytes / seconds / 1e6 }));
} else {
  const out = args.map((file) => JSON.stringify(encodeText(fs.readFileSync(file, 'utf8'))));
  process.stdout.write('[' + out.join(',\n') + ']\n');
}

// A persistent JavaScript interpreter for one code context.
//
// Started by the agent (kernels.py) as `node --expose-internals js_kernel.js EVENTS_FD`.
// Requests come on stdin, one JSON object a line: {"id": 1, "code": "..."}. Events go to
// the file descriptor EVENTS_FD, one JSON object a line, tagged with the request's id:
//   {"id", "type": "stdout" | "stderr", "data": text}
//   {"id", "type": "result", "data": {"text/plain": ..., "application/json"?: ...}}
//   {"id", "type": "error", "name", "value", "traceback"}
//   {"id", "type": "end"}
// plus {"type": "ready"} once at start.
//
// Code runs like in the node REPL: one vm context for the whole life of the interpreter,
// so top-level `let` / `const` / function bindings persist between runs; top-level
// `await` is rewritten by the REPL's own transform (internal/repl/await, hence
// --expose-internals); the value of the last expression is the result. SIGINT (sent by
// the agent on a timeout) interrupts the running code and keeps the context's state.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const util = require('util');
const vm = require('vm');
const { Console } = require('console');
const { createRequire } = require('module');
const { processTopLevelAwait } = require('internal/repl/await');
const acorn = require('internal/deps/acorn/acorn/dist/acorn');

const EVENTS_FD = Number(process.argv[2] || 3);
const CHUNK = 256 * 1024; // characters of output per event line
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function emit(message) {
  const buffer = Buffer.from(JSON.stringify(message) + '\n');
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += fs.writeSync(EVENTS_FD, buffer, offset);
    } catch (error) {
      if (error.code !== 'EAGAIN') throw error;
      Atomics.wait(sleeper, 0, 0, 2); // the agent reads slowly: wait, keep the order
    }
  }
}

// ---------------------------------------------------------------- output capture

let current = null; // id of the running request, or null between runs
let finish = null; // ends the running request

function text(chunk, encoding) {
  if (typeof chunk === 'string') return chunk;
  return Buffer.from(chunk).toString(Buffer.isEncoding(encoding) ? encoding : 'utf8');
}

function capture(stream, name) {
  stream.write = function write(chunk, encoding, callback) {
    if (typeof encoding === 'function') {
      callback = encoding;
      encoding = undefined;
    }
    const data = text(chunk, encoding);
    if (current !== null) {
      for (let start = 0; start < data.length; start += CHUNK) {
        emit({ id: current, type: name, data: data.slice(start, start + CHUNK) });
      }
    }
    if (typeof callback === 'function') process.nextTick(callback);
    return true;
  };
}

capture(process.stdout, 'stdout');
capture(process.stderr, 'stderr');

// ---------------------------------------------------------------- the context

function makeContext() {
  const context = vm.createContext();
  const builtins = new Set(vm.runInContext('Object.getOwnPropertyNames(globalThis)', context));
  for (const name of Object.getOwnPropertyNames(globalThis)) {
    if (!builtins.has(name)) {
      Object.defineProperty(context, name, Object.getOwnPropertyDescriptor(globalThis, name));
    }
  }
  const filename = path.join(process.cwd(), '<code>');
  const module = { exports: {}, filename, id: '<code>', paths: [] };
  Object.assign(context, {
    global: context,
    module,
    exports: module.exports,
    require: createRequire(filename),
    __filename: filename,
    __dirname: process.cwd(),
  });
  context.console = new Console({ stdout: process.stdout, stderr: process.stderr, colorMode: false });
  return context;
}

const context = makeContext();

// ---------------------------------------------------------------- results and errors

function isPlainData(value) {
  if (Array.isArray(value)) return true;
  if (value === null || typeof value !== 'object') return false;
  if (Object.prototype.toString.call(value) !== '[object Object]') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === null || (proto.constructor && proto.constructor.name === 'Object');
}

function bundle(value) {
  const data = {
    'text/plain': util.inspect(value, {
      colors: false,
      depth: 6,
      maxArrayLength: 200,
      maxStringLength: 100000,
      breakLength: 100,
    }),
  };
  if (isPlainData(value)) {
    try {
      const json = JSON.stringify(value);
      if (json !== undefined && json.length <= 1000000) data['application/json'] = JSON.parse(json);
    } catch (error) {
      // circular or not serialisable: text/plain only
    }
  }
  return data;
}

const INTERNAL_FRAME = /\(node:|at node:|js_kernel\.js/;

function describe(error) {
  if (error !== null && typeof error === 'object' && 'stack' in error) {
    const name = String(error.name || 'Error');
    const value = String(error.message === undefined ? '' : error.message);
    const stack = String(error.stack || `${name}: ${value}`)
      .split('\n')
      .filter((line) => line.trim() && !(line.trim().startsWith('at ') && INTERNAL_FRAME.test(line)))
      .join('\n');
    return { name, value, traceback: stack };
  }
  const value = util.inspect(error, { colors: false });
  return { name: 'Error', value: `Uncaught ${value}`, traceback: `Uncaught ${value}` };
}

// ---------------------------------------------------------------- evaluation

function topLevel(code) {
  try {
    return acorn.parse(code, {
      ecmaVersion: 'latest',
      sourceType: 'script',
      allowAwaitOutsideFunction: true,
      allowHashBang: true,
    }).body;
  } catch (error) {
    return null; // a syntax error: reported when the code is compiled
  }
}

// Top-level `const` becomes `let`, so that running a cell again may assign it again.
function constToLet(code) {
  if (!/\bconst\b/.test(code)) return code;
  const body = topLevel(code);
  if (body === null) return code;
  let out = code;
  for (const node of body.slice().reverse()) {
    if (node.type === 'VariableDeclaration' && node.kind === 'const') {
      out = `${out.slice(0, node.start)}let  ${out.slice(node.start + 5)}`;
    }
  }
  return out;
}

function isRedeclaration(error) {
  return (
    error !== null &&
    typeof error === 'object' &&
    error.name === 'SyntaxError' &&
    /has already been declared/.test(String(error.message))
  );
}

// A cell that declares again what an earlier cell declared (a cell run twice): its
// top-level let/const/class declarations become assignments to the existing bindings.
function asAssignments(code) {
  const body = topLevel(code);
  if (body === null) return null;
  let out = code;
  let changed = false;
  for (const node of body.slice().reverse()) {
    let replacement = null;
    if (node.type === 'VariableDeclaration' && node.kind !== 'var') {
      const parts = node.declarations.map((d) => {
        const value = d.init ? code.slice(d.init.start, d.init.end) : 'undefined';
        return `(${code.slice(d.id.start, d.id.end)} = ${value})`;
      });
      replacement = `void (${parts.join(', ')});`;
    } else if (node.type === 'ClassDeclaration' && node.id) {
      replacement = `void (${node.id.name} = ${code.slice(node.start, node.end)});`;
    }
    if (replacement !== null) {
      out = out.slice(0, node.start) + replacement + out.slice(node.end);
      changed = true;
    }
  }
  return changed ? out : null;
}

function compile(code, filename) {
  // `{ a: 1 }` alone is an object, not a block (as in the REPL).
  const candidates = [];
  if (/^\s*{/.test(code) && !/;\s*$/.test(code)) candidates.push(`(${code.trim()})\n`);
  candidates.push(code);
  let firstError = null;
  for (const source of candidates) {
    let wrapped = null;
    if (source.includes('await')) {
      try {
        wrapped = processTopLevelAwait(source);
      } catch (error) {
        firstError = firstError || error;
        continue;
      }
    }
    try {
      return { script: new vm.Script(wrapped || source, { filename }), awaited: wrapped !== null };
    } catch (error) {
      firstError = firstError || error;
    }
  }
  throw firstError;
}

function run(request) {
  current = request.id;
  let done = false;
  // finish({ error }) or finish({ value })
  finish = (outcome) => {
    if (done) return;
    done = true;
    if ('error' in outcome) emit({ id: request.id, type: 'error', ...describe(outcome.error) });
    else if (outcome.value !== undefined) {
      emit({ id: request.id, type: 'result', data: bundle(outcome.value) });
    }
    emit({ id: request.id, type: 'end' });
    current = null;
    finish = null;
    setImmediate(pump);
  };
  const end = finish;
  let code = constToLet(String(request.code));
  if (!code.endsWith('\n')) code += '\n';
  let compiled;
  let result;
  for (let attempt = 0; ; attempt += 1) {
    try {
      compiled = compile(code, `<cell-${request.id}>`);
      result = compiled.script.runInContext(context, { displayErrors: false, breakOnSigint: true });
      break;
    } catch (error) {
      // A redeclaration fails before anything in the script ran: safe to run again.
      const again = attempt === 0 && isRedeclaration(error) ? asAssignments(code) : null;
      if (again === null) {
        end({ error });
        return;
      }
      code = again;
    }
  }
  if (!compiled.awaited) {
    end({ value: result });
    return;
  }
  Promise.resolve(result).then(
    (wrapped) => end({ value: wrapped === undefined ? undefined : wrapped.value }),
    (error) => end({ error }),
  );
}

const queue = [];

function pump() {
  if (current === null && queue.length > 0) run(queue.shift());
}

// Synchronous code is stopped by vm's breakOnSigint; awaited code ends here (its promise
// settles later, unobserved).
process.on('SIGINT', () => {
  if (finish) {
    const error = new Error('Script execution was interrupted by `SIGINT`');
    error.name = 'Interrupted';
    finish({ error });
  }
});

function report(prefix, error) {
  const message = `${prefix}${describe(error).traceback}\n`;
  if (current !== null) emit({ id: current, type: 'stderr', data: message });
}
process.on('uncaughtException', (error) => report('Uncaught ', error));
process.on('unhandledRejection', (reason) => report('Unhandled promise rejection: ', reason));

const requests = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
requests.on('line', (line) => {
  if (!line.trim()) return;
  queue.push(JSON.parse(line));
  pump();
});
requests.on('close', () => process.exit(0));

emit({ type: 'ready', pid: process.pid });

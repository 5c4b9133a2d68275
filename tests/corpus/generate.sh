#!/usr/bin/env bash
# Regenerates the labelled corpus's raw output by running real tools on small broken projects.
# Every file in tests/corpus/<kind>/ was produced by the section of this script named after it;
# MANIFEST.tsv records the tool version and the exact command. Labels (*.labels) are written by
# hand (docs/LABELLING.md) and must be re-checked after a regeneration: line numbers can move.
#
#   bash tests/corpus/generate.sh [SECTION...]     # default: every section
#
# Work happens in $QC_WORK (default /tmp/qc-corpus); outputs go to tests/corpus/.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${QC_WORK:-/tmp/qc-corpus}"
mkdir -p "$WORK"
unset RUST_BACKTRACE
export LC_ALL=C.UTF-8 NO_COLOR=1 FORCE_COLOR=0 CARGO_TERM_COLOR=never TERM=dumb

# run KIND NAME DIR COMMAND...: runs COMMAND in DIR with stdout+stderr merged into
# tests/corpus/KIND/NAME.txt and records the command in MANIFEST.tsv.
run() {
  local kind="$1" name="$2" dir="$3"; shift 3
  mkdir -p "$HERE/$kind"
  (cd "$dir" && bash -c "$*" >"$HERE/$kind/$name.txt" 2>&1)
  local version; version="$(cd "$dir" && bash -c "$TOOL_VERSION" 2>&1 | head -1)"
  local manifest="$HERE/MANIFEST.tsv"
  touch "$manifest"
  { grep -v "^$kind/$name.txt	" "$manifest"; printf '%s/%s.txt\t%s\t%s\n' "$kind" "$name" "$version" "$*"; } \
    | sort >"$manifest.tmp" && mv "$manifest.tmp" "$manifest"
}

# ------------------------------------------------------------------------------- rust
sec_rust() {
  TOOL_VERSION="cargo --version"
  local p="$WORK/rust-build"; rm -rf "$p"; mkdir -p "$p/src"
  cat >"$p/Cargo.toml" <<'T'
[package]
name = "tiny-kv"
version = "0.1.0"
edition = "2021"
T
  cat >"$p/src/main.rs" <<'T'
use std::collections::HashMap;
use std::fs;

struct Store {
    map: HashMap<String, u32>,
}

impl Store {
    fn get(&self, k: &str) -> u32 {
        let unused = 3;
        match self.map.get(k) {
            Some(v) => v,
            None => "zero",
        }
    }
}

fn main() {
    let s = Store { map: HashMap::new() };
    let name = String::from("a");
    let moved = name;
    println!("{} {}", name, s.get(&moved));
    println!("{}", retries);
}
T
  run builds rust-cargo-build "$p" cargo build
  local t="$WORK/rust-test"; rm -rf "$t"; mkdir -p "$t/src"
  cat >"$t/Cargo.toml" <<'T'
[package]
name = "queue"
version = "0.1.0"
edition = "2021"
T
  cat >"$t/src/lib.rs" <<'T'
pub fn drain(v: &mut Vec<u32>) -> u32 {
    let mut total = 0;
    while let Some(x) = v.pop() {
        total += x;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_all() {
        let mut v = vec![1, 2, 3];
        assert_eq!(drain(&mut v), 6);
    }

    #[test]
    fn drains_in_order() {
        let mut v = vec![1, 2, 3];
        assert_eq!(drain(&mut v), 7, "sum of the queue");
    }

    #[test]
    fn index_past_end() {
        let v = vec![1];
        let i = v.len() + 2;
        assert!(v[i] > 0);
    }

    // Not one of wrapper's tests: a file of the broken demo project this script writes, so that
    // the recorded `cargo test` output shows libtest's "ignored" count and `... ignored` line.
    #[test]
    #[ignore]
    fn slow_one() {}
}
T
  run tests rust-cargo-test "$t" cargo test
  local r="$WORK/rust-panic"; rm -rf "$r"; mkdir -p "$r/src"
  cat >"$r/Cargo.toml" <<'T'
[package]
name = "worker"
version = "0.1.0"
edition = "2021"
T
  cat >"$r/src/main.rs" <<'T'
use std::thread;

fn main() {
    println!("starting 1 worker");
    let h = thread::Builder::new()
        .name("ingest".into())
        .spawn(|| {
            let cfg: Option<&str> = None;
            cfg.expect("config file missing");
        })
        .unwrap();
    let _ = h.join();
    let data: Vec<u8> = Vec::new();
    println!("first byte {}", data[0]);
}
T
  (cd "$r" && cargo build -q 2>/dev/null)
  run runtime rust-panic "$r" 'cargo run -q; RUST_BACKTRACE=1 cargo run -q'
}

# ------------------------------------------------------------------------------- C
sec_c() {
  local p="$WORK/c-lib"; rm -rf "$p"; mkdir -p "$p"
  cat >"$p/hash.c" <<'T'
#include <stdio.h>
#include <string.h>
#include "missing_config.h"

static int table[16];

int hash(const char *s) {
    int len;
    unsigned h = 0;
    for (size_t i = 0; i < strlen(s); i++) h = h * 31 + s[i];
    return h % 16;
}
T
  cat >"$p/main.c" <<'T'
#include <stdio.h>

struct point { int x, y; };

int area(struct point *p) {
    int unused_total;
    return p->x * p->z;
}

int main(void) {
    struct point p = {1, 2};
    printf("%d\n", area(&p, 3));
    char *name = 42;
    return crc32(name);
}
T
  cat >"$p/Makefile" <<'T'
CC ?= gcc
CFLAGS = -Wall -Wextra -O0
all: app
app: main.o hash.o
	$(CC) -o $@ $^
%.o: %.c
	$(CC) $(CFLAGS) -c $< -o $@
T
  TOOL_VERSION="gcc --version"
  run builds gcc-make "$p" 'make -k CC=gcc'
  rm -f "$p"/*.o
  TOOL_VERSION="clang-14 --version"
  command -v clang-14 >/dev/null && run builds clang-make "$p" "make -k CC=clang-14"
  rm -f "$p"/*.o
  local l="$WORK/c-link"; rm -rf "$l"; mkdir -p "$l"
  printf 'int helper(int);\nint main(void) { return helper(2); }\n' >"$l/main.c"
  TOOL_VERSION="gcc --version"
  run builds gcc-link "$l" 'gcc -Wall -o app main.c; make app2'
}

# ------------------------------------------------------------------------------- go
sec_go() {
  TOOL_VERSION="go version"
  export GOFLAGS=-mod=mod GOPROXY=off GOCACHE="$WORK/gocache" GOPATH="$WORK/gopath"
  local p="$WORK/go-build"; rm -rf "$p"; mkdir -p "$p/cache"
  printf 'module example.com/shop\n\ngo 1.19\n' >"$p/go.mod"
  cat >"$p/cache/cache.go" <<'T'
package cache

import (
	"fmt"
	"os"
)

type Entry struct{ key string }

func Lookup(m map[string]Entry, k string) Entry {
	resp := m[k]
	return lruEntry{k}
}

func Count() int { return 1 }
T
  cat >"$p/cache/count.go" <<'T'
package cache

func Count() int { return 2 }

var total int = "many"
T
  run builds go-build "$p" 'go build ./... ; go vet ./...'
  local t="$WORK/go-test"; rm -rf "$t"; mkdir -p "$t/retry" "$t/queue"
  printf 'module example.com/svc\n\ngo 1.19\n' >"$t/go.mod"
  cat >"$t/retry/retry.go" <<'T'
package retry

func Budget(n int) int {
	if n <= 0 {
		return 0
	}
	return n - 1
}
T
  cat >"$t/retry/retry_test.go" <<'T'
package retry

import "testing"

func TestBudget(t *testing.T) {
	cases := []struct {
		name string
		in   int
		want int
	}{{"zero", 0, 0}, {"one", 1, 1}, {"many", 5, 4}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Logf("budget(%d)", c.in)
			if got := Budget(c.in); got != c.want {
				t.Errorf("Budget(%d) = %d, want %d", c.in, got, c.want)
			}
		})
	}
}

func TestFast(t *testing.T) {}

func TestSkipped(t *testing.T) { t.Skip("needs network") }
T
  cat >"$t/queue/queue.go" <<'T'
package queue

type Q struct{ items map[string]int }

func (q *Q) Add(k string) { q.items[k]++ }
T
  cat >"$t/queue/queue_test.go" <<'T'
package queue

import "testing"

func TestAdd(t *testing.T) {
	var q Q
	q.Add("a")
	if q.items["a"] != 1 {
		t.Fatal("not added")
	}
}
T
  run tests go-test "$t" 'go test ./...; go test -v ./retry/'
  local r="$WORK/go-panic"; rm -rf "$r"; mkdir -p "$r"
  printf 'module example.com/tool\n\ngo 1.19\n' >"$r/go.mod"
  cat >"$r/main.go" <<'T'
package main

import (
	"fmt"
	"log"
	"os"
)

type Config struct{ Port int }

func load(path string) *Config {
	if _, err := os.Stat(path); err != nil {
		log.Printf("WARNING: config %s not found, using defaults", path)
		return nil
	}
	return &Config{Port: 8080}
}

func main() {
	fmt.Println("tool starting")
	cfg := load("/etc/tool.yaml")
	fmt.Println("port", cfg.Port)
}
T
  run runtime go-panic "$r" 'go run .'
}

# ------------------------------------------------------------------------------- java
sec_java() {
  TOOL_VERSION="javac -version"
  local p="$WORK/java-build"; rm -rf "$p"; mkdir -p "$p/src/shop"
  cat >"$p/src/shop/Cart.java" <<'T'
package shop;

import java.util.List;
import java.util.ArrayList;

public class Cart {
    private List<Item> items = new ArrayList<>();

    public int total() {
        int sum = 0;
        for (Item i : items) sum += i.price;
        return sum;
    }

    public String label() {
        return count;
    }
}
T
  cat >"$p/src/shop/Old.java" <<'T'
package shop;

import java.util.ArrayList;

public class Old {
    @SuppressWarnings("unused")
    private ArrayList raw = new ArrayList();

    public void add(Object o) { raw.add(o); }

    @Deprecated
    public void legacy() {}
}
T
  printf 'package shop;\n\nclass Broken {\n    int f() {\n        return 1\n    }\n}\n' >"$p/Broken.java"
  run builds javac "$p" 'javac -Xlint:all -d out src/shop/*.java; javac -d out Broken.java'
  local r="$WORK/java-run"; rm -rf "$r"; mkdir -p "$r"
  cat >"$r/Main.java" <<'T'
import java.util.HashMap;
import java.util.Map;
import java.util.logging.Logger;

public class Main {
    private static final Logger LOG = Logger.getLogger("shop.pool");

    static int port(Map<String, String> env) {
        try {
            return Integer.parseInt(env.get("PORT"));
        } catch (NumberFormatException e) {
            throw new IllegalStateException("bad PORT setting", e);
        }
    }

    public static void main(String[] args) {
        LOG.warning("pool size not set, using 4");
        LOG.severe("database unreachable, retrying");
        Map<String, String> env = new HashMap<>();
        env.put("PORT", "80a");
        System.out.println("port " + port(env));
    }
}
T
  (cd "$r" && javac Main.java)
  run runtime java-exception "$r" 'java Main'
  TOOL_VERSION="mvn -v | sed 's/\x1b\[[0-9;]*m//g'"
  local m="$WORK/maven"; rm -rf "$m"; mkdir -p "$m/src/main/java/shop"
  cat >"$m/pom.xml" <<'T'
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>shop</groupId>
  <artifactId>shop-api</artifactId>
  <version>1.4.0</version>
  <properties><maven.compiler.release>17</maven.compiler.release></properties>
</project>
T
  cp "$p/src/shop/Cart.java" "$m/src/main/java/shop/"
  run builds maven-offline "$m" 'mvn -o -B package'
}

# ------------------------------------------------------------------------------- js
# tsc, eslint, jest and vitest come from one `npm install` into $WORK/js-tools.
js_tools() {
  local d="$WORK/js-tools"
  if [ ! -x "$d/node_modules/.bin/vitest" ]; then
    mkdir -p "$d" && (cd "$d" && npm init -y >/dev/null &&
      npm install --no-audit --no-fund typescript@5 eslint@9 jest@30 vitest@4 >/dev/null 2>&1)
  fi
  echo "$d/node_modules"
}
sec_js() {
  local nm; nm="$(js_tools)"
  local p="$WORK/ts-app"; rm -rf "$p"; mkdir -p "$p/src"; ln -s "$nm" "$p/node_modules"
  cat >"$p/tsconfig.json" <<'T'
{ "compilerOptions": { "strict": true, "noEmit": true, "target": "es2022", "module": "nodenext" }, "include": ["src"] }
T
  cat >"$p/src/types.ts" <<'T'
export interface Order { id: number; total: number }
T
  cat >"$p/src/store.ts" <<'T'
import { Order, Reply } from "./types.js";

export function total(orders: Order[]): number {
  let count: number = "0";
  for (const o of orders) count += o.amount;
  return count;
}

export function find(orders: Order[], id: string) {
  return orders.find((o) => o.id === id);
}
T
  TOOL_VERSION="node_modules/.bin/tsc --version"
  run builds tsc "$p" 'node_modules/.bin/tsc -p .; node_modules/.bin/tsc -p . --pretty'
  cat >"$p/eslint.config.js" <<'T'
export default [
  {
    files: ["lib/**/*.js"],
    languageOptions: { sourceType: "module", globals: { console: "readonly" } },
    rules: { "no-unused-vars": "error", "no-undef": "error", "no-console": "warn", "eqeqeq": "warn" },
  },
];
T
  mkdir -p "$p/lib"
  cat >"$p/lib/routes.js" <<'T'
export function route(req) {
  const tmp = 1;
  console.log("route", req.path);
  if (req.method == "GET") return handler(req);
  return null;
}
T
  cat >"$p/lib/broken.js" <<'T'
export function broken( {
  return 1;
}
T
  printf '{ "type": "module" }\n' >"$p/package.json"
  TOOL_VERSION="node_modules/.bin/eslint --version"
  run builds eslint "$p" 'node_modules/.bin/eslint lib'
  local j="$WORK/jest-app"; rm -rf "$j"; mkdir -p "$j"; ln -s "$nm" "$j/node_modules"
  printf '{ "name": "cart", "scripts": { "test": "jest" } }\n' >"$j/package.json"
  cat >"$j/cart.js" <<'T'
function total(items) {
  return items.reduce((s, i) => s + i.price * i.qty, 0);
}
function discount(t) {
  if (t < 0) throw new TypeError("negative total");
  return t > 100 ? t * 0.9 : t;
}
module.exports = { total, discount };
T
  cat >"$j/cart.test.js" <<'T'
const { total, discount } = require("./cart");

describe("cart", () => {
  test("sums prices", () => {
    expect(total([{ price: 2, qty: 3 }])).toBe(6);
  });
  test("applies discount over 100", () => {
    expect(discount(200)).toBe(170);
  });
  test("rejects negative totals", () => {
    expect(discount(-1)).toEqual(0);
  });
  test.skip("rounds cents", () => {});
});
T
  cat >"$j/util.test.js" <<'T'
test("trims", () => {
  expect(" a ".trim()).toBe("a");
});
T
  TOOL_VERSION="node_modules/.bin/jest --version"
  run tests jest "$j" 'node_modules/.bin/jest --ci'
  local v="$WORK/vitest-app"; rm -rf "$v"; mkdir -p "$v/src"; ln -s "$nm" "$v/node_modules"
  printf '{ "name": "parse", "type": "module" }\n' >"$v/package.json"
  cat >"$v/src/parse.js" <<'T'
export function parsePort(s) {
  const n = Number(s);
  if (Number.isNaN(n)) throw new Error(`not a port: ${s}`);
  return n;
}
T
  cat >"$v/src/parse.test.js" <<'T'
import { describe, it, expect } from "vitest";
import { parsePort } from "./parse.js";

describe("parsePort", () => {
  it("parses digits", () => {
    expect(parsePort("8080")).toBe(8080);
  });
  it("rejects words", () => {
    expect(parsePort("http")).toBe(80);
  });
  it("keeps objects equal", () => {
    expect({ port: parsePort("1"), host: "a" }).toEqual({ port: 2, host: "a" });
  });
});
T
  cat >"$v/src/ok.test.js" <<'T'
import { it, expect } from "vitest";
it("adds", () => expect(1 + 1).toBe(2));
T
  TOOL_VERSION="node_modules/.bin/vitest --version"
  run tests vitest "$v" 'node_modules/.bin/vitest run'
}

# ------------------------------------------------------------------------------- npm
sec_npm() {
  TOOL_VERSION="npm --version"
  local p="$WORK/npm-app"; rm -rf "$p"; mkdir -p "$p"
  printf '{ "name": "web", "version": "1.0.0", "scripts": { "build": "node build.js", "lint": "exit 3" } }\n' >"$p/package.json"
  printf 'console.log("bundling");\nrequire("./missing-config");\n' >"$p/build.js"
  run package npm-run-error "$p" 'npm run build; npm run lint; npm run tset'
  run package npm-install-offline "$p" 'npm install --offline left-padd-nonexistent-pkg@9.9.9'
  run package npm-usage "$p" 'npm access frob; npm config; npm frobnicate'
}

# ------------------------------------------------------------------------------- python
sec_python() {
  TOOL_VERSION="python3 -m pytest --version"
  local p="$WORK/py-app"; rm -rf "$p"; mkdir -p "$p/shop" "$p/tests"
  : >"$p/shop/__init__.py"
  cat >"$p/shop/cart.py" <<'T'
import logging

log = logging.getLogger("shop.cart")


def total(items):
    if not items:
        log.warning("Cart is empty")
        return 0
    return sum(i["price"] * i["qty"] for i in items)


def apply_code(t, code):
    codes = {"TEN": 0.9}
    if code not in codes:
        log.error("unknown code %s", code)
    return t * codes[code]


class Pool:
    def __init__(self, size):
        self.size = size

    def take(self):
        raise RuntimeError("pool closed")
T
  cat >"$p/tests/test_cart.py" <<'T'
import pytest
from shop.cart import total, apply_code, Pool


def test_total():
    assert total([{"price": 2, "qty": 3}]) == 7


def test_empty():
    assert total([]) is None


def test_code():
    assert apply_code(100, "TWENTY") == 80


def test_dicts():
    got = {"id": 1, "name": "pen", "tags": ["a", "b"]}
    assert got == {"id": 1, "name": "pencil", "tags": ["a", "c"]}


def test_lines():
    assert "line one\nline two\nline 3" == "line one\nline 2\nline 3"


def test_pool():
    Pool(2).take()


@pytest.mark.skip(reason="needs db")
def test_db():
    pass


def helper_check(x):
    assert x > 10, f"too small: {x}"


def test_helper():
    helper_check(3)
T
  cat >"$p/tests/test_import.py" <<'T'
import shop.missing_module
T
  run tests pytest "$p" 'python3 -m pytest -p no:cacheprovider tests/test_cart.py; python3 -m pytest -p no:cacheprovider tests'
  run tests pytest-short "$p" 'python3 -m pytest -p no:cacheprovider -q --tb=short tests/test_cart.py; python3 -m pytest -p no:cacheprovider -q --tb=line tests/test_cart.py'
  TOOL_VERSION="python3 --version"
  cat >"$p/tests/test_unit.py" <<'T'
import logging
import unittest

from shop.cart import total, Pool


class CartTest(unittest.TestCase):
    def test_total(self):
        self.assertEqual(total([{"price": 1, "qty": 1}]), 1)

    def test_total_wrong(self):
        self.assertEqual(total([{"price": 1, "qty": 2}]), 3)

    def test_pool(self):
        Pool(1).take()

    @unittest.skip("slow")
    def test_slow(self):
        pass

    def test_logs(self):
        logging.getLogger("shop.cart").warning("low stock for %s", "pen")
        self.assertTrue(True)


if __name__ == "__main__":
    unittest.main()
T
  run tests unittest-verbose "$p" 'python3 -m unittest -v tests.test_unit; python3 -m unittest tests.test_unit'
  TOOL_VERSION="python3 -m mypy --version"
  cat >"$p/shop/typed.py" <<'T'
from typing import Optional


def port(s: str) -> int:
    return s


def first(xs: list[int]) -> Optional[int]:
    return xs[0] if xs else None


n: int = first([1]) + 1
reveal_type(n)
import yaml_missing_pkg
T
  run builds mypy "$p" 'python3 -m mypy --no-color-output shop; python3 -m mypy --no-color-output --no-error-summary shop/cart.py'
  TOOL_VERSION="python3 -m pip --version"
  printf 'requests-cachex==99.1\nflask==0.0.0.1\n' >"$p/requirements.txt"
  run package pip-install "$p" 'python3 -m pip install --no-index --disable-pip-version-check -r requirements.txt; python3 -m pip install --disable-pip-version-check --no-index ./nonexistent-dir'
  cat >"$p/app.py" <<'T'
import json
import logging

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("app")
log.info("loading settings")
log.warning("settings.json missing, using defaults")
try:
    json.loads("{bad")
except ValueError:
    log.exception("could not parse settings")
log.error("giving up after 3 retries")
cfg = {}
print(cfg["port"])
T
  TOOL_VERSION="python3 --version"
  run runtime python-traceback "$p" 'python3 app.py'
}

# ------------------------------------------------------------------------------- git, make, shell
sec_vcs() {
  TOOL_VERSION="git --version"
  local g="$WORK/git-repo"; rm -rf "$g"; mkdir -p "$g"
  (cd "$g" && git init -q -b main && git config user.email dev@example.com && git config user.name Dev &&
    printf 'port = 80\nhost = "a"\n' >config.toml && printf 'v1\n' >VERSION && git add . && git commit -qm init &&
    git checkout -qb feature && printf 'port = 8080\nhost = "a"\n' >config.toml && printf 'v2\n' >VERSION &&
    git commit -qam "feature port" && git checkout -q main &&
    printf 'port = 9090\nhost = "a"\n' >config.toml && git rm -q VERSION && git commit -qam "main port, no VERSION")
  run vcs git-merge-conflict "$g" 'git merge feature; git status; git diff; git push origin main; git merge --continue'
}

sec_shell() {
  TOOL_VERSION="bash --version"
  local s="$WORK/shell"; rm -rf "$s"; mkdir -p "$s"
  (cd "$s" && git init -q -b main && git config user.email dev@example.com && git config user.name Dev &&
    printf 'def greet(name):\n    return "hi " + name\n\n\nprint(greet("a"))\n' >app.py && git add . && git commit -qm init &&
    printf 'def greet(name, punct="!"):\n    return "hi " + name + punct\n\n\nprint(greet("a"))\nprint(greet("b"))\n' >app.py)
  cat >"$s/check.sh" <<'T'
#!/usr/bin/env bash
set -x
git --no-pager diff
for f in *.py; do
  python3 -m py_compile "$f"
done
count=$(grep -c def app.py)
echo "defs: $count"
./missing-tool --fix
T
  run shell bash-xtrace "$s" 'bash check.sh'
  TOOL_VERSION="make --version"
  cat >"$s/Makefile" <<'T'
.PHONY: all lint test
all: lint test
lint:
	@echo "linting"
	python3 -m py_compile app.py
test:
	./run-tests.sh --fast
T
  run builds make "$s" 'make; make -k all; make deploy'
  TOOL_VERSION="bash --version"
  : >"$s/notes.txt"; : >"$s/b.txt"; ssh-keygen -q -t ed25519 -N "" -f "$s/id_test" >/dev/null
  run shell prompts "$s" 'echo n | rm -i notes.txt; echo; echo n | cp -i b.txt notes.txt; echo; echo n | ssh-keygen -q -t ed25519 -N "" -f id_test; echo n | python3 -c "input(\"Overwrite existing config? [y/N] \")"; echo'
}

# ------------------------------------------------------------------------------- docs, interactive shell
sec_docs() {
  TOOL_VERSION="rustc --version"
  run docs rustc-explain "$WORK" 'rustc --explain E0382; rustc --explain E0499'
}

sec_interactive() {
  TOOL_VERSION="bash --version"
  local s="$WORK/shell"; mkdir -p "$s"
  printf 'ls -la notes.txt\ngrep -rn TODO app.py | head -3\ncd /nonexistent\npython3 -c "import sys; sys.exit(3)"; echo "exit=$?"\nexit\n' >"$WORK/session.in"
  run shell interactive-bash "$s" "script -qfec \"env -i HOME=\$HOME TERM=dumb PATH=\$PATH PS1='dev@box:~/shop\\$ ' bash --norc --noprofile -i\" /dev/null <\"$WORK/session.in\""
}

# ------------------------------------------------------------------------------- holdout
# Generated and labelled after the rules were fixed against the sections above, and scored
# without changing a rule: the figures for holdout/ are the honest ones.
sec_holdout() {
  local h="$WORK/holdout"; rm -rf "$h"; mkdir -p "$h"
  TOOL_VERSION="cargo --version"
  mkdir -p "$h/rs/src"
  printf '[package]\nname = "parser"\nversion = "0.2.0"\nedition = "2021"\n' >"$h/rs/Cargo.toml"
  cat >"$h/rs/src/lib.rs" <<'T'
pub struct Parser<'a> { input: &'a str }

impl<'a> Parser<'a> {
    pub fn new(input: &'a str) -> Self { Parser { input } }
    pub fn first(&self) -> Option<char> {
        let mut chars = self.input.chars();
        if self.input.len() == 0 { return None; }
        chars.next()
    }
    pub fn digits(&self) -> u32 {
        self.input.parse().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn first_char() { assert_eq!(Parser::new("ab").first(), Some('a')); }
    #[test]
    fn digits_parse() { assert_eq!(Parser::new("12x").digits(), 12); }
    #[test]
    #[should_panic(expected = "empty")]
    fn empty_panics() { Parser::new("").first(); }
}
T
  run holdout cargo-clippy-test "$h/rs" 'cargo clippy --all-targets 2>&1; cargo test 2>&1'
  TOOL_VERSION="go version"
  export GOFLAGS=-mod=mod GOPROXY=off GOCACHE="$WORK/gocache" GOPATH="$WORK/gopath"
  mkdir -p "$h/go/calc"
  printf 'module example.com/calc\n\ngo 1.19\n' >"$h/go/go.mod"
  printf 'package calc\n\nfunc Div(a, b int) int { return a / b }\n' >"$h/go/calc/calc.go"
  cat >"$h/go/calc/calc_test.go" <<'T'
package calc

import (
	"fmt"
	"testing"
)

func TestDiv(t *testing.T) {
	if Div(6, 3) != 2 {
		t.Fatalf("Div(6,3) = %d", Div(6, 3))
	}
	fmt.Printf("%d\n", "x")
	_ = Div(1, 0)
}

func TestUndefined(t *testing.T) { Mul(2, 3) }
T
  run holdout go-test-build-failed "$h/go" 'go test ./... ; go vet ./...; sed -i "/TestUndefined/d" calc/calc_test.go; go test -v ./...'
  TOOL_VERSION="python3 -m pytest --version"
  mkdir -p "$h/py"
  cat >"$h/py/test_conv.py" <<'T'
import logging
import warnings

import pytest

log = logging.getLogger("conv")


def to_celsius(f):
    warnings.warn("to_celsius is deprecated, use convert()", DeprecationWarning)
    return (f - 32) * 5 / 9


@pytest.mark.parametrize("f,c", [(32, 0), (212, 100), (50, 11)])
def test_to_celsius(f, c):
    assert round(to_celsius(f)) == c


def test_missing_key():
    log.warning("cache cold, loading from disk")
    data = {"a": [1, 2, 3]}
    assert data == {"a": [1, 2, 4]}


@pytest.fixture
def db():
    raise ConnectionError("db not reachable")


def test_with_db(db):
    pass
T
  run holdout pytest-params-warnings "$h/py" 'python3 -m pytest -p no:cacheprovider -rfE test_conv.py'
  TOOL_VERSION="node_modules/.bin/jest --version"
  local nm; nm="$(js_tools)"
  mkdir -p "$h/jest"; ln -s "$nm" "$h/jest/node_modules"
  printf '{ "name": "h" }\n' >"$h/jest/package.json"
  printf 'test("broken", () => {\n  expect(1).toBe(1)\n});;\n}\n' >"$h/jest/broken.test.js"
  printf 'test("lists", () => {\n  expect([1, 2, 3]).toEqual([1, 2, 4]);\n});\ntest("ok", () => {});\n' >"$h/jest/list.test.js"
  run holdout jest-suite-failed "$h/jest" 'node_modules/.bin/jest --ci'
  TOOL_VERSION="git --version"
  mkdir -p "$h/git" && (cd "$h/git" && git init -q --bare remote.git && git clone -q remote.git a 2>/dev/null && cd a &&
    git config user.email dev@example.com && git config user.name Dev && printf 'one\n' >f.txt && git add . && git commit -qm one &&
    git push -q origin HEAD:main 2>/dev/null && git checkout -qb topic && printf 'topic\n' >f.txt && git commit -qam topic &&
    git checkout -q - 2>/dev/null; git checkout -q -B main && printf 'main\n' >f.txt && git commit -qam main2 && cd .. &&
    git clone -q remote.git b 2>/dev/null && cd b && git config user.email dev@example.com && git config user.name Dev &&
    printf 'other\n' >g.txt && git add . && git commit -qm other && git push -q origin HEAD:main 2>/dev/null; true)
  run holdout git-rebase-push "$h/git/a" 'git rebase topic; git status --short; git rebase --abort; git push origin main'
  TOOL_VERSION="make --version"
  mkdir -p "$h/make/lib"
  printf 'all:\n\t$(MAKE) -C lib\n\t@echo done\n' >"$h/make/Makefile"
  printf 'all: util.o\nutil.o: util.c\n\tgcc -Wall -c util.c -o util.o\n' >"$h/make/lib/Makefile"
  printf 'int f(int x) { int y; return x + undefined_var; }\n' >"$h/make/lib/util.c"
  run holdout make-recursive "$h/make" 'make'
}

main() {
  local all=(rust c go java js npm python vcs shell docs interactive holdout)
  local want=("$@"); [ ${#want[@]} -eq 0 ] && want=("${all[@]}")
  for s in "${want[@]}"; do "sec_$s"; done
}
main "$@"

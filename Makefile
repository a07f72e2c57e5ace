# dbxauth — Databricks authentication for Lua, with a C core.
#   make deps     install missing Debian packages (apt-get)
#   make build    build dbxauth.core for Lua 5.4 (build/5.4) and LuaJIT (build/jit)
#   make test     deps + build + lint + busted under LuaJIT and Lua 5.4
#   make demo     start the fake workspace, run examples/m2m.lua against it, stop it
#   make bench    benchmarks (figures printed)
#   make lint     luacheck + warnings-as-errors build
#   make install  PREFIX=/usr/local LUA_VERSION=5.4|5.1
#   make clean

PKG        ?= pkg-config
CC         ?= cc
OPT        ?= -O2 -g
WARN       := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS     ?= $(OPT)
ALL_CFLAGS := $(CFLAGS) $(WARN) -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC
LDFLAGS    ?=
PREFIX     ?= /usr/local
LUA_VERSION ?= 5.4
LUA54      ?= lua5.4
LUAJIT     ?= luajit
BUSTED     ?= /usr/bin/busted

DEBS := lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev lua-cjson lua-cjson-dev luarocks \
        lua-busted lua-check libcurl4-openssl-dev libssl-dev pkg-config make gcc libc6-dev \
        openssl ca-certificates nginx libnginx-mod-http-ndk libnginx-mod-http-lua \
        lua-resty-core lua-resty-lrucache curl wrk

CORE_SRC := $(wildcard csrc/*.c)
CORE_HDR := $(wildcard csrc/*.h)
LUA_SRC  := $(shell find lua -name '*.lua' 2>/dev/null)

LUA54_CFLAGS  = $(shell $(PKG) --cflags lua5.4)
LUAJIT_CFLAGS = $(shell $(PKG) --cflags luajit)
DEP_CFLAGS    = $(shell $(PKG) --cflags libcurl openssl)
DEP_LIBS      = $(shell $(PKG) --libs libcurl openssl)

.PHONY: all deps build test test-jit test-54 demo bench lint install clean rockspec-check install-check

all: build

deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build: build/5.4/dbxauth/core.so build/jit/dbxauth/core.so

build/5.4/dbxauth/core.so: $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA54_CFLAGS) $(DEP_CFLAGS) -shared -o $@ $(CORE_SRC) $(LDFLAGS) $(DEP_LIBS)

build/jit/dbxauth/core.so: $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUAJIT_CFLAGS) $(DEP_CFLAGS) -shared -o $@ $(CORE_SRC) $(LDFLAGS) $(DEP_LIBS)

build/bench/raw_curl: bench/raw_curl.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -D_POSIX_C_SOURCE=200809L $(DEP_CFLAGS) -o $@ $< $(DEP_LIBS)

lint: build
	luacheck -q lua spec examples bench $(wildcard bin/dbxauth)

# The LuaJIT run comes first so that the last line printed is busted's summary for Lua 5.4.
test: deps build lint rockspec-check install-check test-jit test-54

test-jit: build
	$(LUAJIT) $(BUSTED) --run=jit

test-54: build
	$(LUA54) $(BUSTED)

demo: deps build
	$(LUA54) examples/demo_runner.lua examples/m2m.lua examples/app_call.lua

bench: deps build build/bench/raw_curl
	$(LUA54) bench/run.lua

rockspec-check: build
	sh rockspec/check.sh

# `make install` into a scratch prefix, then load it from there under both interpreters.
install-check: build
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	$(MAKE) -s install PREFIX=$$d LUA_VERSION=5.4 && $(MAKE) -s install PREFIX=$$d LUA_VERSION=5.1 && \
	LUA_PATH_5_4="$$d/share/lua/5.4/?.lua;$$d/share/lua/5.4/?/init.lua;;" LUA_CPATH_5_4="$$d/lib/lua/5.4/?.so;;" \
	  $(LUA54) -e 'assert(require("dbxauth").config({ host = "h", token = "t" }, { env = {} }))' && \
	LUA_PATH="$$d/share/lua/5.1/?.lua;$$d/share/lua/5.1/?/init.lua;;" LUA_CPATH="$$d/lib/lua/5.1/?.so;;" \
	  $(LUAJIT) -e 'assert(require("dbxauth").config({ host = "h", token = "t" }, { env = {} }))' && \
	echo "install: dbxauth loads from PREFIX=<tmp> under lua5.4 and luajit"

install: build
	@case "$(LUA_VERSION)" in 5.4) so=build/5.4/dbxauth/core.so;; 5.1) so=build/jit/dbxauth/core.so;; \
	  *) echo "LUA_VERSION must be 5.4 or 5.1"; exit 1;; esac; \
	install -d $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/dbxauth; \
	install -m 0644 $$so $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/dbxauth/core.so; \
	for f in $(LUA_SRC); do \
	  rel=$${f#lua/}; install -D -m 0644 $$f $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/$$rel; \
	done
	@if [ -f bin/dbxauth ]; then install -D -m 0755 bin/dbxauth $(DESTDIR)$(PREFIX)/bin/dbxauth; fi

clean:
	rm -rf build lua_modules lua_modules_jit

# mailslot -- build, demo, test, install.
#
# `make demo` and `make test` work on a fresh Debian 12 machine: run as root, make
# installs the Debian packages it needs with apt-get; Python packages go into .venv,
# which is made from Debian's /usr/bin/python3 so that the other uids the engine runs
# as can execute it.

PYTHON      ?= /usr/bin/python3
VENV        := .venv
VPY         := $(VENV)/bin/python
PREFIX      ?= /usr
SYSCONFDIR  ?= /etc
LIBDIR      := $(PREFIX)/lib/mailslot
DESTDIR     ?=

# Debian packages: what building needs, and what the test suite's real parts need.
DEB_BUILD := python3-venv python3-dev libcap-dev gcc make python3-yaml python3-prctl
DEB_TEST  := time python3-cffi dovecot-core dovecot-imapd dovecot-sieve dovecot-lmtpd valgrind clang \
             libclang-rt-14-dev util-linux procps postgresql python3-psycopg2 postfix \
             python3-llfuse
DEB_BENCH := hyperfine time dovecot-core dovecot-sieve dovecot-lmtpd gcc
# Packaging (issue 7): building the .deb and the RPM, and the packaging and Postfix
# tests. Postfix is preseeded to "No configuration": no system instance is set up.
DEB_PKG   := debhelper dh-python dpkg-dev fakeroot rpm

.PHONY: all build deps-build deps-test demo test install bench bench-quick bench-deps clean exim

all: build

# apt-get only as root and only for what is missing, so a second run costs nothing.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run make as root, or apt-get install them)"; exit 1; \
	  fi; \
	fi
endef

deps-build:
	$(call apt_install,$(DEB_BUILD))

deps-test: deps-build
	@[ "$$(id -u)" != 0 ] || echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	$(call apt_install,$(DEB_TEST) $(DEB_PKG))
	@[ "$$(id -u)" != 0 ] || $(MAKE) -s --no-print-directory exim

# Exim for tests/postfix/test_exim.py. Debian's exim4-daemon-light conflicts with
# postfix as a package (both are mail-transport-agent), but its binary runs from the
# unpacked package with a private configuration: the .debs are fetched with
# `apt-get download` (no install, nothing else changes) and unpacked under build/.
EXIM_DIR      := build/exim
EXIM_PACKAGES := exim4-daemon-light libidn12
EXIM_BIN      := $(EXIM_DIR)/root/usr/sbin/exim4

exim: $(EXIM_BIN)

$(EXIM_BIN):
	@[ "$$(id -u)" = 0 ] || { echo "fetching Exim's package needs root (apt-get download)"; exit 1; }
	@rm -rf $(EXIM_DIR) && mkdir -p $(EXIM_DIR)/debs
	@# _apt fetches into a directory it may write, so apt does not warn about it.
	@! id -u _apt >/dev/null 2>&1 || chown _apt $(EXIM_DIR)/debs
	@echo "apt-get download $(EXIM_PACKAGES)"
	@cd $(EXIM_DIR)/debs && { apt-get download -qq $(EXIM_PACKAGES) 2>/dev/null || \
	  { apt-get update -qq && apt-get download -qq $(EXIM_PACKAGES); }; }
	@for deb in $(EXIM_DIR)/debs/*.deb; do dpkg-deb -x "$$deb" $(EXIM_DIR)/root; done
	@# The tests run it as root: no setuid-root copy of Exim is left lying about.
	@chmod u-s $@
	@test -x $@

# pip warns about every index location of the machine's pip configuration that has
# no directory for a package ("WARNING: Location '...' is ignored: it is neither a
# file nor a directory"), once per package: noise, not news. Those lines are dropped; every
# other line and pip's exit status are kept.
PIP_QUIET := sed -u "/^WARNING: Location '.*' is ignored: /d"
pip_run = echo "pip install $(1)"; \
	{ $(VPY) -m pip install -q $(1) 2>&1; echo "pip-exit=$$?"; } | $(PIP_QUIET) \
	  | awk '/^pip-exit=/ { sub("pip-exit=", ""); exit $$0 } { print }'
define pip
	@$(call pip_run,$(1))
endef

$(VENV)/.stamp: pyproject.toml | deps-build
	$(PYTHON) -m venv $(VENV)
	$(call pip,--upgrade pip)
	$(call pip,-e '.[test]')
	@touch $@

build: $(VENV)/.stamp
	@if [ -f helper_c/Makefile ]; then $(MAKE) -s -C helper_c; fi
	@chmod -R a+rX pyside $(VENV) 2>/dev/null || true

demo: build
	$(VPY) demo/run_demo.py

test: build deps-test pigeonhole-suite
	$(VPY) -m pytest -q

# Pigeonhole 0.5.19's own Sieve test suite (tests/pigeonhole), from Debian's source
# package of dovecot through a private deb-src list; cached in build/pigeonhole.
.PHONY: pigeonhole-suite
pigeonhole-suite:
	@if [ "$$(id -u)" = 0 ] || [ -d build/pigeonhole/dovecot-2.3-pigeonhole-0.5.19/tests ]; then \
	  tests/pigeonhole/fetch-suite.sh build/pigeonhole; \
	else echo "run make as root once to fetch Pigeonhole's test suite (apt-get source)"; exit 1; fi

# The benchmark matrix (docs/benchmarks.md): both sides on identical inputs, with
# plots (matplotlib, into .venv). bench-quick is the one-minute run a test uses.
bench-deps: build
	$(call apt_install,$(DEB_BENCH))
	@$(VPY) -c 'import matplotlib' 2>/dev/null || { $(call pip_run,'matplotlib>=3.6'); }

# The pipe matrix (rewrites docs/benchmarks.md's generated table), then issue 17's
# LMTP comparison against Dovecot's lmtp (it runs Dovecot's master: root only).
bench: bench-deps
	$(VPY) bench/run_bench.py
	@if [ "$$(id -u)" = 0 ]; then $(VPY) bench/run_bench.py --lmtp; \
	else echo "bench: the LMTP comparison (bench/run_bench.py --lmtp) runs Dovecot's master and needs root: skipped"; fi

bench-quick: bench-deps
	$(VPY) bench/run_bench.py --quick $(if $(BENCH_OUT),--out $(BENCH_OUT))

# The reliability campaign's long runs (docs/reliability.md has their figures):
# `make stress` kills STRESS_TRIALS deliveries per configuration (Maildir and mbox,
# the pipe engine and the fast path (front, worker or server killed),
# with and without Sieve), loads mailslot-lmtpd with 50 clients x STRESS_LMTP_MESSAGES
# while it is restarted and killed, runs the full mbox lock mix against dovecot-lda,
# and cuts the power (tests/reliability/fusedisk.py) after every operation of a delivery;
# `make fuzz` runs the property-based fuzzers for FUZZ_EXAMPLES examples each and the
# C helpers' libFuzzer targets for FUZZ_SECONDS each.
STRESS_TRIALS ?= 1000
STRESS_LMTP_MESSAGES ?= 1000
FUZZ_EXAMPLES ?= 20000
FUZZ_SECONDS  ?= 60
.PHONY: stress fuzz
stress: build deps-test
	@for fmt in maildir mbox; do for sieve in "" --sieve; do \
	  $(VPY) -m tests.reliability.crash --format $$fmt $$sieve --trials $(STRESS_TRIALS) || exit 1; \
	  $(VPY) -m tests.reliability.crash --path fast --format $$fmt $$sieve --trials $(STRESS_TRIALS) || exit 1; \
	done; done
	$(VPY) -m tests.reliability.lmtp_crash --clients 50 --messages $(STRESS_LMTP_MESSAGES) --kills 2 --signal TERM --interval 60
	$(VPY) -m tests.reliability.lmtp_crash --clients 50 --messages $(STRESS_LMTP_MESSAGES) --kills 10 --signal KILL
	$(VPY) -m tests.reliability.lmtp_crash --clients 50 --messages $(STRESS_LMTP_MESSAGES) --kills 10 --signal KILL --format mbox
	$(VPY) -m tests.reliability.lockmix --messages 25
	$(VPY) -m tests.reliability.faults
	$(VPY) -m tests.reliability.hostile
	$(VPY) -m tests.reliability.powerloss
	$(VPY) -m tests.reliability.fusecrash
	$(VPY) -m tests.reliability.fusecrash --sieve
	$(VPY) -m tests.reliability.fusecrash --path fast
	$(VPY) -m tests.reliability.fusecrash --path lmtp
	$(VPY) -m tests.reliability.fusecrash --path lmtp --clients 4

fuzz: build
	MAILSLOT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VPY) -m pytest -q -p no:cacheprovider tests/fuzz
	@if [ -f helper_c/Makefile ]; then $(MAKE) -s -C helper_c fuzz-run FUZZ_SECONDS=$(FUZZ_SECONDS); fi

# The installed engine: a package directory and entry scripts that run Debian's
# python3 in isolated mode (-I) without site (-S); site-packages are added only when
# a setting needs a third-party module, so the pipe path stays lean.
install: build
	install -d $(DESTDIR)$(LIBDIR)/python/mailslot $(DESTDIR)$(PREFIX)/bin
	cd pyside && find mailslot -name '*.py' | while read f; do \
	  install -D -m 0644 "$$f" "$(DESTDIR)$(LIBDIR)/python/$$f"; done
	@# Byte-compile now: delivery users cannot write __pycache__ in a root-owned
	@# directory, and compiling the engine on every message would cost more than
	@# the delivery itself.
	@# -d: tracebacks name the installed file (.../python/mailslot/storage/dirs.py).
	$(PYTHON) -m compileall -q -d $(LIBDIR)/python/mailslot $(DESTDIR)$(LIBDIR)/python/mailslot
	install -m 0755 pyside/entry/mailslot-lda $(DESTDIR)$(LIBDIR)/mailslot-lda
	install -m 0755 pyside/entry/mailslot $(DESTDIR)$(LIBDIR)/mailslot
	install -m 0755 pyside/entry/mailslot-lmtpd $(DESTDIR)$(LIBDIR)/mailslot-lmtpd
	install -m 0755 pyside/entry/mailslot-handoffd $(DESTDIR)$(LIBDIR)/mailslot-handoffd
	ln -sf ../lib/mailslot/mailslot $(DESTDIR)$(PREFIX)/bin/mailslot
	for page in docs/man/*.[158]; do \
	  section=$${page##*.}; \
	  install -D -m 0644 "$$page" "$(DESTDIR)$(PREFIX)/share/man/man$$section/$${page##*/}"; \
	done
	@if [ -f helper_c/Makefile ]; then $(MAKE) -s -C helper_c install DESTDIR=$(DESTDIR) PREFIX=$(PREFIX) LIBDIR=$(LIBDIR); fi

# Debian and RPM packages into dist/, built from `make install` (packaging/).
.PHONY: deb rpm
deb: deps-build
	$(call apt_install,$(DEB_PKG))
	packaging/build-deb.sh dist

rpm: deps-build
	$(call apt_install,$(DEB_PKG))
	packaging/build-rpm.sh dist

clean:
	rm -rf $(VENV) demo/out build dist *.egg-info pyside/*.egg-info
	@if [ -f helper_c/Makefile ]; then $(MAKE) -s -C helper_c clean; fi
	find . -name __pycache__ -prune -exec rm -rf {} +

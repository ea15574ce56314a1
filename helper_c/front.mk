# front.mk -- mailslot-lda-front, the unprivileged fast-path client (issue 18),
# included by Makefile: built with the same hardening, sanitizer, valgrind and
# fuzz builds as the set-id helpers, installed 0755 without any set-id bit.
#
# HANDOFF_DIR (where mailslot-handoffd's per-uid sockets live) and ENGINE_PATH
# (the engine run when no hand-off happens) are fixed at build time; the tests
# build copies that point into a temp dir.

HANDOFF_DIR  ?= /run/mailslot-handoff
ENGINE_PATH  ?= $(LIBDIR)/mailslot-lda
HANDSHAKE_TIMEOUT_MS ?= 3000
FRONT_SRC    := mailslot-lda-front.c handoff_proto.c
FRONT_H      := handoff_proto.h
FRONT_DEFS   := -DHANDOFF_DIR='"$(HANDOFF_DIR)"' -DENGINE_PATH='"$(ENGINE_PATH)"' \
                -DHANDSHAKE_TIMEOUT_MS=$(HANDSHAKE_TIMEOUT_MS)

.PHONY: install-front
# make fuzz-run runs it too, on fuzz/corpus/handoff.
FUZZERS += fuzz_handoff
all: $(OUT)/mailslot-lda-front
asan: $(OUT)/asan/mailslot-lda-front
debug: $(OUT)/debug/mailslot-lda-front
fuzz: $(OUT)/fuzz/fuzz_handoff
install: install-front

$(OUT)/mailslot-lda-front: $(FRONT_SRC) $(FRONT_H) front.mk
	@mkdir -p $(OUT)
	$(CC) $(HARDEN) $(FRONT_DEFS) -o $@ $(FRONT_SRC)

$(OUT)/asan/mailslot-lda-front: $(FRONT_SRC) $(FRONT_H) front.mk
	@mkdir -p $(OUT)/asan
	$(CC) $(SAN) $(FRONT_DEFS) -o $@ $(FRONT_SRC)

$(OUT)/debug/mailslot-lda-front: $(FRONT_SRC) $(FRONT_H) front.mk
	@mkdir -p $(OUT)/debug
	$(CC) -O0 -g -Wall -Wextra -Werror $(FRONT_DEFS) -o $@ $(FRONT_SRC)

$(OUT)/fuzz/fuzz_handoff: fuzz/fuzz_handoff.c handoff_proto.c $(FRONT_H) front.mk
	@mkdir -p $(OUT)/fuzz
	$(CLANG) -g -O1 -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -o $@ $< handoff_proto.c

# No set-id bit, ever: the front runs as the MTA's delivery user.
install-front: $(OUT)/mailslot-lda-front
	install -d $(DESTDIR)$(LIBDIR)
	install -m 0755 $(OUT)/mailslot-lda-front $(DESTDIR)$(LIBDIR)/mailslot-lda-front

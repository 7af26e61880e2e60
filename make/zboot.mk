# zboot.mk - build a zboot-pack EFI image from a Linux x86_64 kernel build tree.
#
#   make -f <zboot-pack>/make/zboot.mk O=<kernel build dir> [ZBOOT_*=...]
#   cd <kernel tree> && make -f <zboot-pack>/make/zboot.mk        # in-tree build (O=.)
#
# Inputs, from the build tree:
#   $(O)/vmlinux                                   the kernel ELF (`make vmlinux` or `make bzImage`)
#   $(O)/arch/x86/boot/compressed/vmlinux.relocs   its relocation table (built by `make bzImage`
#                                                  when CONFIG_RANDOMIZE_BASE=y); used when present
#
# Variables (all optional):
#   ZBOOT_PACK     the zboot-pack binary (default: zboot-pack from PATH)
#   ZBOOT_OUT      the image to write (default: $(O)/arch/x86/boot/zboot.efi)
#   ZBOOT_CODEC    zstd | xz | gzip | lz4 | none (default: zboot-pack's default)
#   ZBOOT_LEVEL    compression level (default: the codec's default)
#   ZBOOT_CMDLINE  kernel command line to embed (default: none)
#   ZBOOT_INITRD   initrd file to embed (default: none)
#   ZBOOT_SBAT     SBAT CSV file to embed as .sbat (default: none)
#   ZBOOT_RELOCS   relocation table (default: the one above when it exists; `none` for none)
#   ZBOOT_VMLINUX  kernel ELF (default: $(O)/vmlinux)
#   ZBOOT_FLAGS    extra zboot-pack options
#
# Targets: zboot (default; the image), zboot-verify (`zboot-pack verify` on it), zboot-clean.
#
# The image is rebuilt only when an input file (vmlinux, relocs, initrd, SBAT, the zboot-pack
# binary) is newer than it, or when a ZBOOT_* value changed since the last build (the values are
# kept in $(ZBOOT_OUT).opts, rewritten only when they differ). `make -q -f zboot.mk ...` exits 0
# when the image is up to date. The output honours SOURCE_DATE_EPOCH (reproducible builds).

O             ?= .
ZBOOT_PACK    ?= zboot-pack
ZBOOT_VMLINUX ?= $(O)/vmlinux
ZBOOT_OUT     ?= $(O)/arch/x86/boot/zboot.efi
ZBOOT_CODEC   ?=
ZBOOT_LEVEL   ?=
ZBOOT_CMDLINE ?=
ZBOOT_INITRD  ?=
ZBOOT_SBAT    ?=
ZBOOT_RELOCS  ?= $(wildcard $(O)/arch/x86/boot/compressed/vmlinux.relocs)
ZBOOT_FLAGS   ?=

ifeq ($(V),1)
Q :=
else
Q := @
endif

ifeq ($(ZBOOT_RELOCS),none)
override ZBOOT_RELOCS :=
zboot-no-relocs := --no-relocs
endif

# Single-quote a value for the shell.
zboot-quote = '$(subst ','\'',$(1))'

# The binary as a file, so that a rebuilt zboot-pack rebuilds the image.
zboot-pack-file := $(firstword $(wildcard $(ZBOOT_PACK)) \
                   $(shell command -v $(call zboot-quote,$(ZBOOT_PACK)) 2>/dev/null))

zboot-args := $(if $(ZBOOT_CODEC),--codec $(call zboot-quote,$(ZBOOT_CODEC))) \
	$(if $(ZBOOT_LEVEL),--level $(call zboot-quote,$(ZBOOT_LEVEL))) \
	$(if $(ZBOOT_CMDLINE),--cmdline $(call zboot-quote,$(ZBOOT_CMDLINE))) \
	$(if $(ZBOOT_INITRD),--initrd $(call zboot-quote,$(ZBOOT_INITRD))) \
	$(if $(ZBOOT_SBAT),--sbat $(call zboot-quote,$(ZBOOT_SBAT))) \
	$(if $(ZBOOT_RELOCS),--relocs $(call zboot-quote,$(ZBOOT_RELOCS))) $(zboot-no-relocs) \
	$(ZBOOT_FLAGS)

# Options record: rewritten (at parse time, like kbuild's .cmd files) only when it changes.
zboot-opts-file := $(ZBOOT_OUT).opts
zboot-opts := $(ZBOOT_PACK) $(ZBOOT_VMLINUX) $(strip $(zboot-args))
ifneq ($(zboot-opts),$(file <$(zboot-opts-file)))
$(shell mkdir -p $(call zboot-quote,$(dir $(ZBOOT_OUT))))
$(file >$(zboot-opts-file),$(zboot-opts))
endif

.PHONY: zboot zboot-verify zboot-clean
.DELETE_ON_ERROR:

zboot: $(ZBOOT_OUT)

$(ZBOOT_OUT): $(ZBOOT_VMLINUX) $(ZBOOT_RELOCS) $(ZBOOT_INITRD) $(ZBOOT_SBAT) \
		$(zboot-pack-file) $(zboot-opts-file)
	@echo '  ZBOOT   $@'
	$(Q)$(ZBOOT_PACK) $(call zboot-quote,$(ZBOOT_VMLINUX)) -o $(call zboot-quote,$@) -q $(zboot-args)

zboot-verify: $(ZBOOT_OUT)
	$(Q)$(ZBOOT_PACK) verify $(call zboot-quote,$(ZBOOT_OUT))

zboot-clean:
	rm -f $(call zboot-quote,$(ZBOOT_OUT)) $(call zboot-quote,$(zboot-opts-file))

# An example cloudboot plan: a Debian cloud image on the local disk, a kernel and initrd
# pulled from an OCI registry, and a menu to choose between them.
#
# Check it on the host:  cloudboot plan check docs/examples/plan.hcl --arch arm64

default_target = "debian"
dns            = ["10.0.2.3", "1.1.1.1"]

menu {
  timeout = 10 # seconds; 0 waits for an answer forever
  prompt  = "Boot which system?"
}

locals {
  registry = "registry.example.net:5000"
  console  = arch == "arm64" ? "ttyAMA0" : "ttyS0"
  common   = ["console=${local.console}", "console=tty0", "panic=-1"]
}

# Debian 12 genericcloud: ext4 root with /boot inside; the image has no fs label, so the
# partition is found by its GPT number on the first virtio disk.
target "debian" {
  label   = "Debian 12 (local disk)"
  version = "12"
  disk {
    device = "/dev/vda1"
    fs     = "ext4"
  }
  cmdline = [local.common, "root=/dev/vda1", "ro"]
}

# A kernel + initrd pushed with `cloudboot push artifact`, one tag per arch.
target "rescue" {
  label   = "Rescue system ${self.version} (OCI, ${arch})"
  version = "6.1"
  kernel  = "${local.registry}/rescue/kernel:${self.version}-${arch}"
  initrd  = ["${local.registry}/rescue/initrd:${self.version}-${arch}"]
  cmdline = [
    local.common,
    "ip={{.IPSpec}}",
    "cloudboot.registry={{.Registry}}",
  ]
}

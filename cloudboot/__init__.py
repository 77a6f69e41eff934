"""cloudboot: boot a stock distro userspace from an unmodified cloud image on any hypervisor."""

__version__ = "0.1.0"

"""`python3 -m cloudboot.init`: the same entry point the initramfs /init script calls."""

from cloudboot.init.main import main

raise SystemExit(main())

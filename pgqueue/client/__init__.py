"""What a producer process needs beyond the public API: turning calls into job rows and
inserting them. Imported by :mod:`pgqueue.app`; never imports the worker or the CLI."""

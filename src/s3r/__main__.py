import sys

from s3r.cli import main

sys.exit(main())

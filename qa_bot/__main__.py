import sys

from qa_bot.cli import main

sys.exit(main())

from afa_worker.cli import main

raise SystemExit(main())

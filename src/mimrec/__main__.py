from mimrec.cli import main

raise SystemExit(main())

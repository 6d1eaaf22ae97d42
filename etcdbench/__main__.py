from etcdbench.cli.app import main

raise SystemExit(main())

from propdesk.devstack.cli import main

raise SystemExit(main())

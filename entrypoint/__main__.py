from entrypoint.boot import main

raise SystemExit(main())

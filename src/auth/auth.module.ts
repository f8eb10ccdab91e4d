import { Global, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { MongooseModule } from '@nestjs/mongoose';
import { API_TOKEN, ApiTokenSchema } from './api-token.model.js';
import { ApiTokens } from './api-tokens.service.js';
import { AuthGuard } from './auth.guard.js';
import { TokensController } from './tokens.controller.js';

@Global()
@Module({
  imports: [MongooseModule.forFeature([{ name: API_TOKEN, schema: ApiTokenSchema }])],
  controllers: [TokensController],
  providers: [ApiTokens, { provide: APP_GUARD, useClass: AuthGuard }],
  exports: [ApiTokens],
})
export class AuthModule {}
